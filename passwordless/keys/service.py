"""Keeping the signing keys: one made at first start, `passwordless keys rotate` adding the next."""

from __future__ import annotations

import sqlite3

from passwordless.keys import store
from passwordless.keys.signer import SigningKey, generate_key

ASYMMETRIC = ("ES256", "EdDSA")


def ensure_current(conn: sqlite3.Connection, algorithm: str, now: float) -> None:
    """Make the first key of an asymmetric algorithm, unless there is one."""
    if algorithm in ASYMMETRIC and not store.has_current(conn, algorithm):
        store.insert(conn, generate_key(algorithm, now))


def rotate(conn: sqlite3.Connection, algorithm: str, now: float) -> SigningKey:
    """Retire the current key (still published until its tokens expire) and add a new one."""
    if algorithm not in ASYMMETRIC:
        raise ValueError(f"jwt.algorithm {algorithm} has no key pair to rotate (HS256 uses jwt.secret)")
    store.retire_current(conn, algorithm, now)
    key = generate_key(algorithm, now)
    store.insert(conn, key)
    return key


def published(conn: sqlite3.Connection, now: float, access_ttl: float) -> list[SigningKey]:
    return store.published(conn, now, access_ttl)
