"""Signing keys of the asymmetric JWT algorithms (table signing_keys)."""

from __future__ import annotations

import json

from passwordless.keys.signer import SigningKey
from passwordless.platform.db.types import Connection


def published(conn: Connection, now: float, access_ttl: float) -> list[SigningKey]:
    """The current keys (also those not signing yet), and retired ones whose tokens may not
    have expired yet."""
    rows = conn.execute(
        "SELECT kid, algorithm, private_key, public_jwk, created_at, COALESCE(signs_from, created_at), retired_at"
        " FROM signing_keys WHERE retired_at IS NULL OR retired_at + ? > ? ORDER BY created_at, kid",
        (int(access_ttl), int(now)),
    ).fetchall()
    return [SigningKey(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]


def has_current(conn: Connection, algorithm: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM signing_keys WHERE algorithm = ? AND retired_at IS NULL", (algorithm,)
    ).fetchone()
    return row is not None


def insert(conn: Connection, key: SigningKey) -> None:
    conn.execute(
        "INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at, signs_from)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (key.kid, key.algorithm, key.private_pem, json.dumps(key.public_jwk), key.created_at, key.signs_from),
    )


def retire_current(conn: Connection, algorithm: str, at: float) -> int:
    """Every key that would still sign at `at` stops then (a key waiting to start included)."""
    cursor = conn.execute(
        "UPDATE signing_keys SET retired_at = ? WHERE algorithm = ? AND (retired_at IS NULL OR retired_at > ?)",
        (int(at), algorithm, int(at)),
    )
    return cursor.rowcount


def current_algorithms(conn: Connection) -> list[str]:
    rows = conn.execute("SELECT DISTINCT algorithm FROM signing_keys WHERE retired_at IS NULL ORDER BY algorithm")
    return [r[0] for r in rows.fetchall()]
