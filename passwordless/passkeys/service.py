"""Passkeys: what registering and signing in share (registration.py, signin.py), and managing a
user's passkeys."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from passwordless.config.settings import WebauthnSettings
from passwordless.mail.render import Templates
from passwordless.passkeys import store
from passwordless.passkeys.ceremony import MalformedCredential
from passwordless.passkeys.store import Passkey as Passkey  # re-exported for the routes
from passwordless.platform import audit
from passwordless.platform.client import Client
from passwordless.platform.clock import Clock
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.errors import ApiError, invalid_request
from passwordless.platform.metrics import Metrics
from passwordless.sessions import service as sessions
from passwordless.sessions.limits import Limits
from passwordless.sessions.service import Principal
from passwordless.webhooks import events

MAX_NAME = 64


@dataclass(frozen=True)
class PasskeyDeps:
    """What passkeys need, built in app.py."""

    db: Database
    clock: Clock
    webauthn: WebauthnSettings
    public_url: str  # the account page's link in the "passkey added" email
    decoy_key: str  # the secret whose subkey makes the decoy credential IDs
    templates: Templates
    wake_mail: Callable[[], None]
    outbox: events.Outbox
    metrics: Metrics
    limits: Limits
    sessions: sessions.SessionDeps


def challenge_hash(challenge: bytes) -> bytes:
    return hashlib.sha256(challenge).digest()


def invalid(message: str = "The passkey could not be verified.") -> ApiError:
    return ApiError(401, "invalid_credential", message)


async def list_passkeys(deps: PasskeyDeps, principal: Principal) -> list[Passkey]:
    return await deps.db.read(store.for_user, principal.user.id)


async def rename(deps: PasskeyDeps, principal: Principal, passkey_id: str, name: str) -> Passkey:
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise invalid_request(f"A passkey's name is 1 to {MAX_NAME} characters.")

    def change(conn: Connection) -> Passkey | None:
        store.rename(conn, passkey_id, principal.user.id, name)
        return store.by_id(conn, passkey_id, principal.user.id)

    passkey = await deps.db.write(change)
    if passkey is None:
        raise ApiError(404, "not_found", "No such passkey.")
    return passkey


async def delete(deps: PasskeyDeps, principal: Principal, passkey_id: str, client: Client) -> None:
    now = deps.clock()

    def remove(conn: Connection) -> bool:
        if not store.delete(conn, passkey_id, principal.user.id):
            return False
        row = audit_event("passkey_deleted", True, client, principal.user.id, {"passkey_id": passkey_id})
        audit.record(conn, row, now)
        return True

    if not await deps.db.write(remove):
        raise ApiError(404, "not_found", "No such passkey.")


def answer(exc: Exception) -> ApiError:
    if isinstance(exc, MalformedCredential):
        return invalid_request("The body does not hold a valid credential.")
    return invalid()


async def failed(deps: PasskeyDeps, event: str, client: Client, user_id: str | None, exc: Exception) -> None:
    reason = str(exc)[:200]
    details: dict[str, object] = {"reason": reason}
    if "sign count" in reason.lower():
        details["possible_clone"] = True  # the authenticator's counter went backwards
    await deps.db.write(audit.record, audit_event(event, False, client, user_id, details), deps.clock())


def audit_event(
    name: str, success: bool, client: Client, user_id: str | None, details: dict[str, object],
    email: str | None = None,
) -> audit.AuditEvent:
    return audit.AuditEvent(name, success, user_id, email, client.ip, client.user_agent, details)
