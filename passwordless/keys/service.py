"""Keeping the signing keys: one made at first start, `passwordless keys rotate` adding the next."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from passwordless.keys import store
from passwordless.keys.signer import SigningKey, generate_key
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection, notify

ASYMMETRIC = ("ES256", "EdDSA")
WITH_KEY_PAIRS = ("RS256", *ASYMMETRIC)  # RS256 signs only the OIDC provider's tokens
JWKS_CACHE_SECONDS = 300  # Cache-Control max-age of /.well-known/jwks.json
KEY_RELOAD_SECONDS = 60.0  # how often a running server reads the keys again (and at once on ROTATED)
ROTATED = "passwordless_signing_keys"  # the channel `keys rotate` notifies (PostgreSQL)
# A rotated key is published at once but signs only once every verifier's cached JWKS (fetched
# at worst just before the rotation) and every server (reading keys once a reload interval)
# have it: a verifier never meets a kid it cannot find (API.md).
PUBLISH_BEFORE_SIGNING = JWKS_CACHE_SECONDS + int(KEY_RELOAD_SECONDS)


def ensure_current(conn: Connection, algorithm: str, now: float) -> None:
    """Make the first key of an asymmetric algorithm, unless there is one."""
    if algorithm in WITH_KEY_PAIRS and not store.has_current(conn, algorithm):
        store.insert(conn, generate_key(algorithm, now))


def rotate(conn: Connection, algorithm: str, now: float, *, at_once: bool = False) -> SigningKey:
    """Add a new key, published now and signing from PUBLISH_BEFORE_SIGNING later (or now, for
    an emergency); the current key signs until then and stays published until its tokens expire."""
    if algorithm not in WITH_KEY_PAIRS:
        raise ValueError(f"jwt.algorithm {algorithm} has no key pair to rotate (HS256 uses jwt.secret)")
    signs_from = now if at_once else now + PUBLISH_BEFORE_SIGNING
    store.retire_current(conn, algorithm, signs_from)
    key = generate_key(algorithm, now, signs_from)
    store.insert(conn, key)
    notify(conn, ROTATED)  # running servers reload now rather than within KEY_RELOAD_SECONDS
    return key


def published(conn: Connection, now: float, access_ttl: float) -> list[SigningKey]:
    return store.published(conn, now, access_ttl)


def in_use(conn: Connection) -> list[str]:
    """The algorithms that have a current key (`keys rotate` rotates each)."""
    return store.current_algorithms(conn)


def rotate_all(conn: Connection, api_algorithm: str, now: float, *, at_once: bool = False) -> list[SigningKey]:
    """`passwordless keys rotate`: the API's key (ES256/EdDSA) and every key the OIDC provider
    signs with (its RSA key, and ES256/EdDSA keys its clients asked for)."""
    algorithms = dict.fromkeys([*([api_algorithm] if api_algorithm in ASYMMETRIC else []), *in_use(conn)])
    if not algorithms:
        raise ValueError(f"jwt.algorithm {api_algorithm} has no key pair to rotate (HS256 uses jwt.secret)")
    return [rotate(conn, algorithm, now, at_once=at_once) for algorithm in algorithms]


def without_current(conn: Connection, algorithms: list[str]) -> list[str]:
    return [a for a in algorithms if not store.has_current(conn, a)]


async def ensure_keys(db: Database, algorithms: Sequence[str], now: float) -> bool:
    """The first key of each algorithm (the OIDC provider's), unless there is one; whether one
    was made. Keys are made off the event loop (an RSA key takes a while); the unit that stores
    them adds only those still missing (SERIALIZABLE on PostgreSQL: several servers making them
    together keep one) and tells every server to publish them (NOTIFY)."""
    wanted = list(dict.fromkeys(algorithms))
    missing = await db.read(without_current, wanted)
    if not missing:
        return False
    made = await asyncio.to_thread(lambda: [generate_key(a, now) for a in missing])
    await db.write(insert_unless_current, made)
    return True


def insert_unless_current(conn: Connection, made: list[SigningKey]) -> None:
    """Keys made outside the unit (off the event loop), each kept only if its algorithm still
    has no current key: with several servers starting at once, one key per algorithm."""
    kept = [key for key in made if not store.has_current(conn, key.algorithm)]
    for key in kept:
        store.insert(conn, key)
    if kept:
        notify(conn, ROTATED)  # running servers publish it now rather than within KEY_RELOAD_SECONDS
