"""OpenID Connect clients made through the admin API (table oidc_clients, migration 0006): the
settings of `[[oidc.clients]]` as JSON, the secret only as its SHA-256."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from passwordless.config.settings import OidcClientSettings
from passwordless.platform.db.types import Connection, Row

# Kept in their own columns (or, the secret, never): the rest of a client goes into `settings`.
_COLUMNS = ("id", "name", "secret", "secret_sha256")
_SETTINGS = tuple(f.name for f in fields(OidcClientSettings) if f.name not in _COLUMNS)


@dataclass(frozen=True)
class StoredClient:
    settings: OidcClientSettings  # secret_sha256 is the stored hash; secret is always ""
    created_at: int
    updated_at: int


def _settings_json(client: OidcClientSettings) -> str:
    return json.dumps({name: getattr(client, name) for name in _SETTINGS}, separators=(",", ":"))


def _client(row: Row | None) -> StoredClient | None:
    if row is None:
        return None
    stored = json.loads(row["settings"])
    known: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in _SETTINGS}
    digest = bytes(row["secret_hash"]).hex() if row["secret_hash"] is not None else ""
    settings = OidcClientSettings(id=row["id"], name=row["name"], secret_sha256=digest, **known)
    return StoredClient(settings, row["created_at"], row["updated_at"])


_SELECT = "SELECT id, name, secret_hash, settings, created_at, updated_at FROM oidc_clients"


def by_id(conn: Connection, client_id: str) -> StoredClient | None:
    return _client(conn.execute(_SELECT + " WHERE id = ?", (client_id,)).fetchone())


def listed(conn: Connection) -> list[StoredClient]:
    return [c for c in map(_client, conn.execute(_SELECT + " ORDER BY id").fetchall()) if c]


def any_client(conn: Connection) -> bool:
    return conn.execute("SELECT 1 FROM oidc_clients LIMIT 1").fetchone() is not None


def insert(conn: Connection, client: OidcClientSettings, secret_hash: bytes | None, now: float) -> bool:
    """False when a client already has the id (two servers may create it at once)."""
    made = conn.execute(
        "INSERT INTO oidc_clients (id, name, secret_hash, settings, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING id",
        (client.id, client.name, secret_hash, _settings_json(client), int(now), int(now)),
    ).fetchone()
    return made is not None


def update(conn: Connection, client: OidcClientSettings, now: float) -> bool:
    cursor = conn.execute(
        "UPDATE oidc_clients SET name = ?, settings = ?, updated_at = ? WHERE id = ?",
        (client.name, _settings_json(client), int(now), client.id),
    )
    return cursor.rowcount > 0


def set_secret(conn: Connection, client_id: str, secret_hash: bytes, now: float) -> bool:
    cursor = conn.execute(
        "UPDATE oidc_clients SET secret_hash = ?, updated_at = ? WHERE id = ?", (secret_hash, int(now), client_id)
    )
    return cursor.rowcount > 0


def delete(conn: Connection, client_id: str) -> bool:
    return conn.execute("DELETE FROM oidc_clients WHERE id = ?", (client_id,)).rowcount > 0


def forget_grants(conn: Connection, client_id: str, now: float) -> int:
    """A deleted client keeps nothing: its grants are revoked (their refresh and access tokens
    with them), its unredeemed codes and its users' consents are gone. How many grants ended."""
    revoked = conn.execute(
        "UPDATE oidc_grants SET revoked_at = ?, revoked_reason = 'client_deleted'"
        " WHERE client_id = ? AND revoked_at IS NULL",
        (int(now), client_id),
    ).rowcount
    conn.execute("DELETE FROM oidc_codes WHERE client_id = ?", (client_id,))
    conn.execute("DELETE FROM oidc_consents WHERE client_id = ?", (client_id,))
    return int(revoked)
