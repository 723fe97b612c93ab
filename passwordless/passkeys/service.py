"""Passkeys: registering one for a signed-in user, signing in with one, and managing them."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from webauthn import generate_authentication_options, generate_registration_options
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from passwordless.config.settings import WebauthnSettings
from passwordless.platform import audit
from passwordless.platform.clock import Clock
from passwordless.platform.db import Database
from passwordless.platform.metrics import Metrics
from passwordless.platform.crypto import PASSKEY_DECOY, new_id, random_bytes, subkey
from passwordless.platform.client import Client
from passwordless.platform.errors import ApiError, invalid_request
from passwordless.sessions.limits import Limits, check_ip_limit
from passwordless.mail import queue
from passwordless.mail.render import Rendered, Templates
from passwordless.users.rules import browser_name, normalise_email
from passwordless.passkeys import ceremony, store
from passwordless.passkeys.ceremony import MalformedCredential, RejectedCredential
from passwordless.passkeys.store import Passkey as Passkey  # re-exported for the routes
from passwordless.sessions import service as sessions
from passwordless.sessions.service import Principal, SignIn
from passwordless.users import store as users
from passwordless.webhooks import events

ALGORITHMS = [
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
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



def _challenge_hash(challenge: bytes) -> bytes:
    return hashlib.sha256(challenge).digest()


def _invalid(message: str = "The passkey could not be verified.") -> ApiError:
    return ApiError(401, "invalid_credential", message)


def _passkey_limit(deps: PasskeyDeps) -> ApiError:
    limit = deps.webauthn.max_passkeys
    return ApiError(409, "passkey_limit", f"An account holds at most {limit} passkeys; delete one first.")


async def registration_options(deps: PasskeyDeps, principal: Principal) -> dict[str, Any]:
    config, now = deps.webauthn, deps.clock()
    user = principal.user
    await sessions.require_recent_sign_in(deps.sessions, principal)

    def prepare(conn: sqlite3.Connection) -> tuple[bytes, list[Passkey]]:
        handle = users.webauthn_handle(conn, user.id) or b""
        return handle, store.for_user(conn, user.id)

    handle, existing = await deps.db.read(prepare)
    if len(existing) >= config.max_passkeys:
        raise _passkey_limit(deps)
    challenge = random_bytes(32)
    options = generate_registration_options(
        rp_id=config.rp_id, rp_name=config.rp_name, user_name=user.email, user_id=handle,
        user_display_name=user.email, challenge=challenge, timeout=int(config.challenge_ttl * 1000),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement(config.resident_key),
            user_verification=UserVerificationRequirement(config.user_verification),
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=p.credential_id) for p in existing],
        supported_pub_key_algs=ALGORITHMS,
    )
    await deps.db.write(
        store.add_challenge, _challenge_hash(challenge), "registration", user.id, now, now + config.challenge_ttl
    )
    return options_to_json_dict(options)


async def register(
    deps: PasskeyDeps, principal: Principal, credential: dict[str, Any], name: str | None, client: Client
) -> Passkey:
    config, now = deps.webauthn, deps.clock()
    await sessions.require_recent_sign_in(deps.sessions, principal)
    try:
        challenge = ceremony.challenge_of(credential)
        if ceremony.credential_id_too_long(ceremony.raw_id_of(credential)):
            raise MalformedCredential("credential ID longer than 1023 bytes")
        found, owner = await deps.db.write(store.spend_challenge, _challenge_hash(challenge), "registration", now)
        if not found or owner != principal.user.id:
            raise RejectedCredential("unknown, used or expired challenge")
        verified = ceremony.verify_registration(
            credential, challenge, config.rp_id, list(config.origins), config.user_verification == "required"
        )
        if ceremony.credential_id_too_long(verified.credential_id):
            raise MalformedCredential("credential ID longer than 1023 bytes")
    except (MalformedCredential, RejectedCredential) as exc:
        await _failed(deps, "passkey_registration_failed", client, principal.user.id, exc)
        raise _answer(exc) from None
    passkey = Passkey(
        new_id(), principal.user.id, verified.credential_id, verified.credential_public_key, verified.sign_count,
        _transports(credential), verified.aaguid, verified.credential_device_type == "multi_device",
        verified.credential_backed_up, " ".join((name or "").split()) or f"Passkey ({browser_name(client.user_agent)})",
        int(now), None,
    )
    notice = _added_notice(deps, principal.user.email, passkey.name, now)

    def save(conn: sqlite3.Connection) -> str:
        # Counted in the write transaction: two verifies racing cannot both take the last place.
        if store.count_for_user(conn, principal.user.id) >= config.max_passkeys:
            return "limit"
        if not store.insert(conn, passkey):
            return "duplicate"
        details: dict[str, object] = {"passkey_id": passkey.id, "aaguid": passkey.aaguid}
        audit.record(conn, _event("passkey_registered", True, client, principal.user.id, details), now)
        events.emit(conn, deps.outbox, "passkey.registered", principal.user, now, passkey_id=passkey.id)
        # The owner hears of every new key, whoever added it; only if the passkey is saved.
        queue.enqueue(conn, principal.user.email, notice.subject, notice.text, notice.html, now)
        return "saved"

    outcome = await deps.db.write(save)
    if outcome == "limit":
        raise _passkey_limit(deps)
    if outcome == "duplicate":
        raise invalid_request("This passkey is registered already.")
    deps.wake_mail()
    return passkey


def _added_notice(deps: PasskeyDeps, email: str, name: str, now: float) -> Rendered:
    when = datetime.fromtimestamp(int(now), tz=timezone.utc).strftime("%H:%M UTC on %d %b %Y")
    return deps.templates.render(
        "passkey_added",
        {
            "site": deps.webauthn.rp_name,
            "name": name,
            "time": when,
            "link": f"{deps.public_url}/account",
            "email": email,
        },
    )


# At most this many of a user's credentials (most recently used first) are listed for a sign-in with
# an email, so that one small request cannot draw a large answer whatever the account holds.
MAX_ALLOWED_CREDENTIALS = 32

# Decoys look like what real authenticators make. Credential ID lengths in bytes, weighted out of
# 256: 16 (Google Password Manager, Chrome's virtual authenticator, many security keys' discoverable
# credentials), 20 (iCloud Keychain), 32 (Windows Hello, software authenticators such as
# py_webauthn's test keys), 64 (security keys' server-side credentials). Counts weighted like
# accounts: most people hold one passkey, some two, a few three.
_DECOY_LENGTHS = ((16, 96), (20, 56), (32, 72), (64, 32))
_DECOY_COUNTS = ((1, 150), (2, 76), (3, 30))


async def login_options(deps: PasskeyDeps, email: str | None, client: Client) -> dict[str, Any]:
    """Without an email: any discoverable passkey (usernameless, autofill). With one: that user's
    passkeys — and for an address without any, made-up ones, so the answer tells nothing."""
    await check_ip_limit(deps.limits, "passkey", client)
    config, now = deps.webauthn, deps.clock()
    allowed: list[bytes] = []
    if email is not None:
        address = normalise_email(email)
        user = await deps.db.read(users.by_email, address)
        mine = await deps.db.read(
            store.sign_in_ids, user.id, ceremony.MAX_CREDENTIAL_ID_BYTES, MAX_ALLOWED_CREDENTIALS
        ) if user else []
        allowed = mine or _decoy_ids(deps.decoy_key, address)
    challenge = random_bytes(32)
    options = generate_authentication_options(
        rp_id=config.rp_id, challenge=challenge, timeout=int(config.challenge_ttl * 1000),
        allow_credentials=[PublicKeyCredentialDescriptor(id=c) for c in allowed],
        user_verification=UserVerificationRequirement(config.user_verification),
    )
    await deps.db.write(
        store.add_challenge, _challenge_hash(challenge), "authentication", None, now, now + config.challenge_ttl
    )
    return options_to_json_dict(options)


def _decoy_ids(secret: str, email: str) -> list[bytes]:
    """The same made-up credential IDs for an address every time, as real ones would be: a secret
    seed per address, stretched into a count, a length per ID and the IDs' bytes."""
    seed = hmac.new(subkey(secret, PASSKEY_DECOY), b"passkey-decoy:" + email.encode(), hashlib.sha256).digest()
    longest = max(length for length, _ in _DECOY_LENGTHS)
    stream = hashlib.shake_256(seed).digest(4 + 3 * longest)
    count = _weighted_pick(stream[0], _DECOY_COUNTS)
    ids = []
    for i in range(count):
        start = 4 + i * longest
        ids.append(stream[start:start + _weighted_pick(stream[1 + i], _DECOY_LENGTHS)])
    return ids


def _weighted_pick(byte: int, weighted: tuple[tuple[int, int], ...]) -> int:
    """The value whose share of 0..255 holds `byte` (the weights add up to 256)."""
    for value, weight in weighted:
        if byte < weight:
            return value
        byte -= weight
    raise AssertionError("weights must add up to 256")


async def login(deps: PasskeyDeps, credential: dict[str, Any], client: Client) -> SignIn:
    await check_ip_limit(deps.limits, "passkey", client)
    config, now = deps.webauthn, deps.clock()
    passkey: Passkey | None = None
    try:
        challenge = ceremony.challenge_of(credential)
        raw_id = ceremony.raw_id_of(credential)

        def spend_and_find(conn: sqlite3.Connection) -> tuple[bool, Passkey | None, bytes | None]:
            """Spend the challenge and find the credential and its user's handle: one transaction."""
            found, _ = store.spend_challenge(conn, _challenge_hash(challenge), "authentication", now)
            passkey = store.by_credential_id(conn, raw_id) if found else None
            return found, passkey, users.webauthn_handle(conn, passkey.user_id) if passkey else None

        found, passkey, handle = await deps.db.write(spend_and_find)
        if not found:
            raise RejectedCredential("unknown, used or expired challenge")
        if passkey is None:
            raise RejectedCredential("unknown credential")
        _check_user_handle(credential, handle)
        verified = ceremony.verify_authentication(
            credential, challenge, config.rp_id, list(config.origins), passkey.public_key, passkey.sign_count,
            config.user_verification == "required",
        )
    except (MalformedCredential, RejectedCredential) as exc:
        deps.metrics.attempt("passkey", False)
        await _failed(deps, "passkey_login_failed", client, passkey.user_id if passkey else None, exc)
        raise _answer(exc) from None
    amr = ("hwk", "user") if verified.user_verified else ("hwk",)
    found_passkey = passkey

    def sign_in(conn: sqlite3.Connection) -> SignIn | None:
        user = users.by_id(conn, found_passkey.user_id)
        if user is None:
            return None
        store.record_use(conn, found_passkey.id, verified.new_sign_count, verified.credential_backed_up, now)
        details = {"passkey_id": found_passkey.id, "user_verified": verified.user_verified}
        audit.record(conn, _event("passkey_login_succeeded", True, client, user.id, details, user.email), now)
        proof = sessions.Proof("passkey", amr)
        return sessions.complete_sign_in(conn, deps.sessions.jwt.refresh_ttl, deps.outbox, user, proof, client, now)

    result = await deps.db.write(sign_in)
    deps.metrics.attempt("passkey", result is not None)
    if result is None:
        raise _invalid()
    return result


def _check_user_handle(credential: dict[str, Any], handle: bytes | None) -> None:
    """A user handle, when the authenticator sends one, must be that of the credential's user."""
    response = credential.get("response")
    given = response.get("userHandle") if isinstance(response, dict) else None
    if given in (None, ""):
        return
    if handle is None or not hmac.compare_digest(ceremony.b64url_decode(given), handle):
        raise RejectedCredential("the user handle does not belong to this credential")


async def list_passkeys(deps: PasskeyDeps, principal: Principal) -> list[Passkey]:
    return await deps.db.read(store.for_user, principal.user.id)


async def rename(deps: PasskeyDeps, principal: Principal, passkey_id: str, name: str) -> Passkey:
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise invalid_request(f"A passkey's name is 1 to {MAX_NAME} characters.")

    def change(conn: sqlite3.Connection) -> Passkey | None:
        store.rename(conn, passkey_id, principal.user.id, name)
        return store.by_id(conn, passkey_id, principal.user.id)

    passkey = await deps.db.write(change)
    if passkey is None:
        raise ApiError(404, "not_found", "No such passkey.")
    return passkey


async def delete(deps: PasskeyDeps, principal: Principal, passkey_id: str, client: Client) -> None:
    now = deps.clock()

    def remove(conn: sqlite3.Connection) -> bool:
        if not store.delete(conn, passkey_id, principal.user.id):
            return False
        event = _event("passkey_deleted", True, client, principal.user.id, {"passkey_id": passkey_id})
        audit.record(conn, event, now)
        return True

    if not await deps.db.write(remove):
        raise ApiError(404, "not_found", "No such passkey.")


def _transports(credential: dict[str, Any]) -> tuple[str, ...]:
    response = credential.get("response")
    found = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(found, list):
        return ()
    return tuple(t for t in found if isinstance(t, str) and len(t) <= 32)[:8]


def _answer(exc: Exception) -> ApiError:
    if isinstance(exc, MalformedCredential):
        return invalid_request("The body does not hold a valid credential.")
    return _invalid()


async def _failed(deps: PasskeyDeps, event: str, client: Client, user_id: str | None, exc: Exception) -> None:
    reason = str(exc)[:200]
    details: dict[str, object] = {"reason": reason}
    if "sign count" in reason.lower():
        details["possible_clone"] = True  # the authenticator's counter went backwards
    await deps.db.write(audit.record, _event(event, False, client, user_id, details), deps.clock())


def _event(
    name: str, success: bool, client: Client, user_id: str | None, details: dict[str, object],
    email: str | None = None,
) -> audit.AuditEvent:
    return audit.AuditEvent(name, success, user_id, email, client.ip, client.user_agent, details)
