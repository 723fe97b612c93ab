"""One key per use of jwt.secret (issue 15 item 8): HS256 access tokens, sign-in code HMACs,
session cookies and passkey decoys each use a key derived with HKDF under its own label, so a
relying app given the HS256 key (`passwordless keys hs256-key`) holds nothing else; the HS256
kid is no hash of the secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from itsdangerous import BadSignature, URLSafeTimedSerializer

from passwordless.config.settings import Config
from passwordless.platform import crypto
from passwordless.sessions.http import cookie_name
from tests.support.app import deps_of, running
from tests.support.engine import connection
from tests.support.processes import clean_env, cli
from tests.support.signin import request_sign_in
from tests.test_tokens import KEY, PUBLIC_URL, SECRET, _b64, _toml

pytestmark = pytest.mark.anyio

USES = [crypto.HS256_SIGNING, crypto.HS256_KID, crypto.CODE_HMAC, crypto.SESSION_COOKIE, crypto.PASSKEY_DECOY]
COOKIE_SALT = "passwordless.session-cookie"


def test_every_use_has_its_own_key() -> None:
    keys = [crypto.subkey(SECRET, use) for use in USES]
    assert len(set(keys)) == len(USES)
    assert all(len(k) == 32 and SECRET.encode() not in k for k in keys)
    assert crypto.subkey("another secret of forty-some characters....", crypto.HS256_SIGNING) not in keys


def _hs256_key_command(config: Config) -> str:
    path = Path(config.database.path).parent / "config.toml"
    result = cli("keys", "hs256-key", "--config", str(path), cwd=path.parent, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout
    return result.stdout.strip()


async def _signed_in(client: httpx.AsyncClient, config: Config) -> dict[str, str]:
    token, _ = await request_sign_in(client, config, "ann@example.com")
    r = await client.post("/auth/magic-link/verify", json={"token": token})
    assert r.status_code == 200, r.text
    return {"access_token": r.json()["access_token"]}


async def test_a_token_verifies_with_the_printed_key_and_not_with_the_secret(
    make_config: Callable[..., Config],
) -> None:
    config = make_config(_toml())
    printed = _hs256_key_command(config)
    assert printed.encode() == KEY  # the derivation docs/security.md describes
    async with running(config) as (_, client):
        token = (await _signed_in(client, config))["access_token"]
    claims = jwt.decode(token, printed, algorithms=["HS256"], audience="passwordless", issuer=PUBLIC_URL)
    assert claims["email"] == "ann@example.com"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET, algorithms=["HS256"], audience="passwordless", issuer=PUBLIC_URL)


async def test_the_hs256_kid_is_no_hash_of_the_secret_or_of_the_key(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        token = (await _signed_in(client, config))["access_token"]
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid.startswith("hs256-")
    digests = [hashlib.sha256(value).hexdigest() for value in (SECRET.encode(), KEY)]
    digests += [_b64(hashlib.sha256(value).digest()) for value in (SECRET.encode(), KEY)]
    assert not any(kid.removeprefix("hs256-") in d for d in digests)
    assert kid == "hs256-" + _b64(crypto.subkey(SECRET, crypto.HS256_KID))[:16]


def test_hs256_key_is_refused_in_asymmetric_modes(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml("ES256"))
    path = Path(config.database.path).parent / "config.toml"
    result = cli("keys", "hs256-key", "--config", str(path), cwd=path.parent, env=clean_env())
    assert result.returncode == 2
    assert "jwks.json" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_codes_are_keyed_with_their_own_subkey(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        _, code = await request_sign_in(client, config, "ann@example.com")
    with connection(config) as conn:
        ticket_id, stored = conn.execute("SELECT id, code_hash FROM sign_in_tickets").fetchone()
    message = f"{ticket_id}:{code}".encode()
    assert stored == hmac.digest(crypto.subkey(SECRET, crypto.CODE_HMAC), message, "sha256")
    assert stored != hmac.digest(SECRET.encode(), message, "sha256")


async def test_cookies_use_their_own_subkey_and_old_cookies_still_work(make_config: Callable[..., Config]) -> None:
    """A cookie signed before the upgrade (with jwt.secret itself) keeps its browser signed in
    until it expires; new cookies are signed with the cookie subkey only."""
    config = make_config(_toml())
    async with running(config) as (app, client):
        token = (await _signed_in(client, config))["access_token"]
        session_id = jwt.decode(token, options={"verify_signature": False})["sid"]
        new = deps_of(app).sessions.cookies.dumps(session_id)
        with pytest.raises(BadSignature):
            URLSafeTimedSerializer(SECRET, salt=COOKIE_SALT).loads(new)
        assert URLSafeTimedSerializer(crypto.subkey(SECRET, crypto.SESSION_COOKIE), salt=COOKIE_SALT).loads(new)
        old = URLSafeTimedSerializer(SECRET, salt=COOKIE_SALT).dumps(session_id)
        forged = URLSafeTimedSerializer(KEY, salt=COOKIE_SALT).dumps(session_id)  # what an app could make
        for cookie, status in ((new, 200), (old, 200), (forged, 401)):
            r = await client.get("/auth/me", headers={"cookie": f"{cookie_name(deps_of(app).sessions)}={cookie}"})
            assert r.status_code == status, r.text
