"""The admin API's OpenID Connect clients (OIDC.md, "Clients and users"): made, changed, deleted
and given a new secret, each one unit with its `oidc_client_changed` audit row. The secret is
generated here, shown once and kept only as its SHA-256; config-file clients are read-only (409)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from passwordless.clients import rules, store
from passwordless.clients.catalogue import Catalogue, Entry
from passwordless.config.settings import OidcClientSettings
from passwordless.platform import audit
from passwordless.platform.client import Client as Caller
from passwordless.platform.clock import Clock
from passwordless.platform.crypto import new_token, token_hash
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.errors import ApiError

EVENT = "oidc_client_changed"


@dataclass(frozen=True)
class ClientDeps:
    db: Database
    clock: Clock
    catalogue: Catalogue
    production: bool
    # Makes (unless there is one) and publishes the signing key of each algorithm, before the
    # client that needs it exists: OIDC.md "Keys", never on the start-up path.
    keys_needed: Callable[[Sequence[str]], Awaitable[None]]


@dataclass(frozen=True)
class Created:
    entry: Entry
    secret: str | None  # shown once; None for a public client


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "No such client.")


def _from_config(client_id: str) -> ApiError:
    return ApiError(409, "client_from_config", f"The client {client_id} comes from the config file: change it there.")


def _audit(conn: Connection, caller: Caller, client_id: str, change: str, now: float) -> None:
    details = {"client_id": client_id, "change": change}
    audit.record(conn, audit.AuditEvent(EVENT, True, None, None, caller.ip, caller.user_agent, details), now)


async def list_clients(deps: ClientDeps) -> list[Entry]:
    return await deps.db.read(deps.catalogue.entries)


async def get_client(deps: ClientDeps, client_id: str) -> Entry:
    entry = await deps.db.read(deps.catalogue.find, client_id)
    if entry is None:
        raise _not_found()
    return entry


async def create(deps: ClientDeps, data: Mapping[str, object], caller: Caller) -> Created:
    client = rules.new_client(data)
    rules.check(client, deps.production)
    if client.id in deps.catalogue.configured:
        raise _from_config(client.id)
    secret = None if client.public else new_token()
    await deps.keys_needed([client.id_token_signed_response_alg])
    now = deps.clock()

    def unit(conn: Connection) -> Entry | None:
        if not store.insert(conn, client, token_hash(secret) if secret else None, now):
            return None
        _audit(conn, caller, client.id, "created", now)
        return deps.catalogue.find(conn, client.id)

    entry = await deps.db.write(unit)
    if entry is None:
        raise ApiError(409, "client_exists", f"A client with the id {client.id} exists already.")
    return Created(entry, secret)


async def update(deps: ClientDeps, client_id: str, data: Mapping[str, object], caller: Caller) -> Entry:
    current = await _changeable(deps, client_id)
    client = rules.changed_client(current, data)
    rules.check(client, deps.production)
    await deps.keys_needed([client.id_token_signed_response_alg])
    now = deps.clock()

    def unit(conn: Connection) -> Entry | None:
        stored = deps.catalogue.find(conn, client_id)  # read again: another call may have changed it meanwhile
        if stored is None:
            return None
        changed = rules.changed_client(stored.settings, data)
        rules.check(changed, deps.production)
        store.update(conn, changed, now)
        _audit(conn, caller, client_id, "updated", now)
        return deps.catalogue.find(conn, client_id)

    entry = await deps.db.write(unit)
    if entry is None:
        raise _not_found()
    return entry


async def delete(deps: ClientDeps, client_id: str, caller: Caller) -> None:
    """The client goes with its grants (refresh and access tokens stop working), codes and consents."""
    await _changeable(deps, client_id)
    now = deps.clock()

    def unit(conn: Connection) -> bool:
        if not store.delete(conn, client_id):
            return False
        revoked = store.forget_grants(conn, client_id, now)
        details = {"client_id": client_id, "change": "deleted", "grants_revoked": revoked}
        audit.record(conn, audit.AuditEvent(EVENT, True, None, None, caller.ip, caller.user_agent, details), now)
        return True

    if not await deps.db.write(unit):
        raise _not_found()


async def new_secret(deps: ClientDeps, client_id: str, caller: Caller) -> str:
    """A new secret, shown once; the old one stops working with this commit."""
    current = await _changeable(deps, client_id)
    if current.public:
        raise ApiError(409, "public_client", f"The client {client_id} is public: it has no secret.")
    secret, now = new_token(), deps.clock()

    def unit(conn: Connection) -> bool:
        if not store.set_secret(conn, client_id, token_hash(secret), now):
            return False
        _audit(conn, caller, client_id, "secret_rotated", now)
        return True

    if not await deps.db.write(unit):
        raise _not_found()
    return secret


async def _changeable(deps: ClientDeps, client_id: str) -> OidcClientSettings:
    if client_id in deps.catalogue.configured:
        raise _from_config(client_id)
    entry = await deps.db.read(deps.catalogue.find, client_id)
    if entry is None:
        raise _not_found()
    return entry.settings
