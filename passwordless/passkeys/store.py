"""Passkeys (table passkeys) and their single-use challenges (table webauthn_challenges)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from passwordless.platform.db.types import Connection, Row
from passwordless.platform.sql import delete_where

_COLUMNS = (
    "id, user_id, credential_id, public_key, sign_count, transports, aaguid, backup_eligible,"
    " backed_up, name, created_at, last_used_at"
)


@dataclass(frozen=True)
class Passkey:
    id: str
    user_id: str
    credential_id: bytes
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]
    aaguid: str
    backup_eligible: bool
    backed_up: bool
    name: str
    created_at: int
    last_used_at: int | None


def _passkey(row: Row | None) -> Passkey | None:
    if row is None:
        return None
    return Passkey(
        row["id"], row["user_id"], row["credential_id"], row["public_key"], row["sign_count"],
        tuple(json.loads(row["transports"])), row["aaguid"], bool(row["backup_eligible"]),
        bool(row["backed_up"]), row["name"], row["created_at"], row["last_used_at"],
    )


def count_for_user(conn: Connection, user_id: str) -> int:
    return int(conn.execute("SELECT count(*) FROM passkeys WHERE user_id = ?", (user_id,)).fetchone()[0])


def for_user(conn: Connection, user_id: str) -> list[Passkey]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM passkeys WHERE user_id = ? ORDER BY created_at, id", (user_id,)
    ).fetchall()
    return [p for p in map(_passkey, rows) if p]


def sign_in_ids(conn: Connection, user_id: str, max_bytes: int, limit: int) -> list[bytes]:
    """A user's credential IDs to offer at sign-in: those within `max_bytes` (older rows may hold
    longer ones), most recently used first, at most `limit`."""
    rows = conn.execute(
        "SELECT credential_id FROM passkeys WHERE user_id = ? AND length(credential_id) <= ?"
        " ORDER BY coalesce(last_used_at, created_at) DESC, created_at DESC, id LIMIT ?",
        (user_id, max_bytes, limit),
    ).fetchall()
    return [bytes(row[0]) for row in rows]


def by_credential_id(conn: Connection, credential_id: bytes) -> Passkey | None:
    return _passkey(conn.execute(f"SELECT {_COLUMNS} FROM passkeys WHERE credential_id = ?", (credential_id,)).fetchone())


def by_id(conn: Connection, passkey_id: str, user_id: str) -> Passkey | None:
    return _passkey(
        conn.execute(f"SELECT {_COLUMNS} FROM passkeys WHERE id = ? AND user_id = ?", (passkey_id, user_id)).fetchone()
    )


def insert(conn: Connection, p: Passkey) -> bool:
    """False when the credential is registered already."""
    cursor = conn.execute(
        f"INSERT INTO passkeys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (credential_id) DO NOTHING",
        (
            p.id, p.user_id, p.credential_id, p.public_key, p.sign_count, json.dumps(list(p.transports)),
            p.aaguid, int(p.backup_eligible), int(p.backed_up), p.name, p.created_at, p.last_used_at,
        ),
    )
    return cursor.rowcount > 0


def record_use(conn: Connection, passkey_id: str, sign_count: int, backed_up: bool, now: float) -> None:
    conn.execute(
        "UPDATE passkeys SET sign_count = ?, backed_up = ?, last_used_at = ? WHERE id = ?",
        (sign_count, int(backed_up), int(now), passkey_id),
    )


def rename(conn: Connection, passkey_id: str, user_id: str, name: str) -> bool:
    cursor = conn.execute("UPDATE passkeys SET name = ? WHERE id = ? AND user_id = ?", (name, passkey_id, user_id))
    return cursor.rowcount > 0


def delete(conn: Connection, passkey_id: str, user_id: str) -> bool:
    cursor = conn.execute("DELETE FROM passkeys WHERE id = ? AND user_id = ?", (passkey_id, user_id))
    return cursor.rowcount > 0


def add_challenge(
    conn: Connection, challenge_hash: bytes, purpose: str, user_id: str | None, now: float, expires_at: float
) -> None:
    conn.execute(
        "INSERT INTO webauthn_challenges (challenge_hash, purpose, user_id, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (challenge_hash, purpose, user_id, int(now), int(expires_at)),
    )


def spend_challenge(
    conn: Connection, challenge_hash: bytes, purpose: str, now: float
) -> tuple[bool, str | None]:
    """Use a live challenge up, in one statement: (found, the user it was made for)."""
    row = conn.execute(
        "DELETE FROM webauthn_challenges WHERE challenge_hash = ? AND purpose = ? AND expires_at > ?"
        " RETURNING user_id",
        (challenge_hash, purpose, now),
    ).fetchone()
    return (True, row[0]) if row else (False, None)


def prune_challenges(conn: Connection, before: float, limit: int, dry_run: bool = False) -> int:
    return delete_where(conn, "webauthn_challenges", "expires_at < ?", (int(before),), limit, dry_run)


def count_all(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM passkeys").fetchone()[0])
