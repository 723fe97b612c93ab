"""Keeping the signing keys: one made at first start, `passwordless keys rotate` adding the next."""

from __future__ import annotations

from passwordless.keys import store
from passwordless.keys.signer import SigningKey, generate_key
from passwordless.platform.db.types import Connection, notify

ASYMMETRIC = ("ES256", "EdDSA")
JWKS_CACHE_SECONDS = 300  # Cache-Control max-age of /.well-known/jwks.json
KEY_RELOAD_SECONDS = 60.0  # how often a running server reads the keys again (and at once on ROTATED)
ROTATED = "passwordless_signing_keys"  # the channel `keys rotate` notifies (PostgreSQL)
# A rotated key is published at once but signs only once every verifier's cached JWKS (fetched
# at worst just before the rotation) and every server (reading keys once a reload interval)
# have it: a verifier never meets a kid it cannot find (API.md).
PUBLISH_BEFORE_SIGNING = JWKS_CACHE_SECONDS + int(KEY_RELOAD_SECONDS)


def ensure_current(conn: Connection, algorithm: str, now: float) -> None:
    """Make the first key of an asymmetric algorithm, unless there is one."""
    if algorithm in ASYMMETRIC and not store.has_current(conn, algorithm):
        store.insert(conn, generate_key(algorithm, now))


def rotate(conn: Connection, algorithm: str, now: float, *, at_once: bool = False) -> SigningKey:
    """Add a new key, published now and signing from PUBLISH_BEFORE_SIGNING later (or now, for
    an emergency); the current key signs until then and stays published until its tokens expire."""
    if algorithm not in ASYMMETRIC:
        raise ValueError(f"jwt.algorithm {algorithm} has no key pair to rotate (HS256 uses jwt.secret)")
    signs_from = now if at_once else now + PUBLISH_BEFORE_SIGNING
    store.retire_current(conn, algorithm, signs_from)
    key = generate_key(algorithm, now, signs_from)
    store.insert(conn, key)
    notify(conn, ROTATED)  # running servers reload now rather than within KEY_RELOAD_SECONDS
    return key


def published(conn: Connection, now: float, access_ttl: float) -> list[SigningKey]:
    return store.published(conn, now, access_ttl)
