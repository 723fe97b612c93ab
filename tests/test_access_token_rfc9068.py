"""Access tokens follow RFC 9068 (API.md "Tokens and sessions"): a standard resource-server
validator, Authlib's JWTBearerTokenValidator, accepts them as they are (it needs client_id), and
auth_time says when the user signed in to start the session: kept by a refresh, stored on the
session (older sessions take their creation time, migration 0004)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from joserfc.jwk import KeySet, OctKey

from passwordless.config.settings import Config
from passwordless.platform.crypto import hs256_key
from tests.support.app import FakeClock, running
from tests.support.signin import claims
from tests.test_tokens import PUBLIC_URL, SECRET, _jwks, _sign_in, _toml

pytestmark = pytest.mark.anyio

MIGRATIONS = Path(__file__).parent.parent / "migrations" / "sqlite"


class Validator(JWTBearerTokenValidator):  # type: ignore[misc]  # Authlib ships no type hints
    """What a relying app writes: Authlib's validator with the keys this server publishes."""

    def __init__(self, keys: OctKey | KeySet) -> None:
        super().__init__(issuer=PUBLIC_URL, resource_server="passwordless")
        self.keys = keys

    def get_jwks(self) -> OctKey | KeySet:
        return self.keys


async def _keys_of(client: httpx.AsyncClient, algorithm: str) -> OctKey | KeySet:
    if algorithm == "HS256":
        return OctKey.import_key(hs256_key(SECRET).encode())  # what `passwordless keys hs256-key` prints
    return KeySet.import_key_set({"keys": await _jwks(client)})


# Not EdDSA: Authlib (through joserfc) refuses it by default as "not recommended" (docs/security.md).
@pytest.mark.parametrize("algorithm", ["HS256", "ES256"])
async def test_authlibs_rfc9068_validator_accepts_our_access_tokens(
    make_config: Callable[..., Config], algorithm: str
) -> None:
    config = make_config(_toml(algorithm))
    async with running(config) as (_, client):
        token = (await _sign_in(client, config, "ann@example.com"))["access_token"]
        validator = Validator(await _keys_of(client, algorithm))

        checked = validator.authenticate_token(token)
        validator.validate_token(checked, scopes=None, request=None)  # raises InvalidTokenError if refused

        assert checked["client_id"] == "passwordless"
        assert checked["sub"] == claims(token)["sub"]


async def test_auth_time_is_the_sign_in_and_a_refresh_keeps_it(make_config: Callable[..., Config]) -> None:
    clock = FakeClock()
    config = make_config(_toml())
    async with running(config, clock=clock) as (_, client):
        signed_in_at = int(clock())
        first = await _sign_in(client, config, "ann@example.com")
        assert claims(first["access_token"])["auth_time"] == signed_in_at

        clock.advance(3600)
        r = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert r.status_code == 200, r.text
        refreshed = claims(r.json()["access_token"])
        assert refreshed["iat"] == signed_in_at + 3600
        assert refreshed["auth_time"] == signed_in_at
        assert refreshed["client_id"] == "passwordless"


async def test_migration_0004_gives_existing_sessions_their_creation_time(tmp_path: Path) -> None:
    """A database of the previous version: its sessions started with a sign-in when created."""
    with closing(sqlite3.connect(tmp_path / "auth.db")) as conn:
        for name in ("0001_init.sql", "0002_add_active_sessions_index.sql", "0003_add_webhook_hook_key.sql"):
            conn.executescript((MIGRATIONS / name).read_text())
        conn.execute("INSERT INTO users (id, email, webauthn_handle, created_at) VALUES ('u1', 'ann@example.com', x'01', 1)")
        conn.execute(
            "INSERT INTO sessions (id, user_id, refresh_token_hash, amr, created_at, last_used_at, expires_at)"
            " VALUES ('s1', 'u1', x'00', '[\"email\"]', 1700000000, 1700009000, 1800000000)"
        )
        conn.executescript((MIGRATIONS / "0004_add_session_auth_time.sql").read_text())
        assert conn.execute("SELECT auth_time FROM sessions WHERE id = 's1'").fetchone() == (1700000000,)

