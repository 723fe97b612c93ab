"""Access tokens and signing keys (API.md, "Tokens and sessions"; CONFIG.md, jwt.* and `keys
rotate`): what an access token holds, the forgeries /auth/me must refuse, the JWKS of the
asymmetric modes checked with an independent verifier, algorithm confusion, key rotation
through the CLI and keys kept across restarts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from passwordless.config.settings import Config
from passwordless.keys import service as keys_service
from tests.support.app import FakeClock, running
from tests.support.engine import connection
from tests.support.processes import clean_env, cli
from tests.support.signin import request_sign_in

pytestmark = pytest.mark.anyio

PUBLIC_URL = "http://auth.example.test"
SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ACCESS_TTL = 900
ASYMMETRIC = [("ES256", "EC", "P-256"), ("EdDSA", "OKP", "Ed25519")]


def _toml(algorithm: str = "HS256") -> str:
    return (
        f'[server]\npublic_url = "{PUBLIC_URL}"\n\n'
        f'[jwt]\nsecret = "{SECRET}"\nalgorithm = "{algorithm}"\n\n'
        '[email]\ntransport = "file"\n\n'
        "[rate_limit]\nenabled = false\n"
    )


# --- signing in: a magic link read from the delivered email -----------------------------------


async def _sign_in(client: httpx.AsyncClient, config: Config, email: str) -> dict[str, Any]:
    token, _ = await request_sign_in(client, config, email)
    r = await client.post("/auth/magic-link/verify", json={"token": token})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/auth/me", headers={"authorization": f"Bearer {token}"})


async def _assert_refused(client: httpx.AsyncClient, token: str) -> None:
    r = await _me(client, token)
    assert r.status_code == 401, r.text
    assert r.json() == {"error": {"code": "invalid_token", "message": r.json()["error"]["message"]}}


# --- building tokens by hand --------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, claims, _ = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(claims))


def _signing_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def _hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """HS256 signed by hand: pyjwt itself refuses PEM keys as HMAC secrets, an attacker does not."""
    head = {**header, "alg": "HS256"}
    data = _signing_input(head, claims)
    return data + "." + _b64(hmac.new(key, data.encode(), hashlib.sha256).digest())


# --- the access token ---------------------------------------------------------------------------


async def test_access_token_header_and_claims(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        before = int(time.time())
        signed_in = await _sign_in(client, config, "ann@example.com")
        token = signed_in["access_token"]

        header = jwt.get_unverified_header(token)
        assert header["typ"] == "at+jwt"
        assert header["alg"] == "HS256"
        assert isinstance(header["kid"], str) and header["kid"]

        claims = jwt.decode(token, KEY, algorithms=["HS256"], audience="passwordless", issuer=PUBLIC_URL)
        assert {"iss", "aud", "sub", "sid", "email", "amr", "iat", "exp", "jti"} <= set(claims)
        assert claims["iss"] == PUBLIC_URL
        assert claims["aud"] == "passwordless"
        assert claims["sub"] == signed_in["user"]["id"]
        assert claims["email"] == "ann@example.com"
        assert claims["amr"] == ["email"]
        assert isinstance(claims["iat"], int) and before <= claims["iat"] <= time.time() + 1
        assert claims["exp"] == claims["iat"] + ACCESS_TTL
        assert isinstance(claims["jti"], str) and claims["jti"]

        r = await client.get("/auth/sessions", headers={"authorization": f"Bearer {token}"})
        assert [s["id"] for s in r.json()["sessions"]] == [claims["sid"]]

        again = await _sign_in(client, config, "ann@example.com")
        other = jwt.decode(again["access_token"], KEY, algorithms=["HS256"], audience="passwordless")
        assert other["jti"] != claims["jti"]
        assert other["sid"] != claims["sid"]


def _none(h: dict[str, Any], c: dict[str, Any]) -> str:
    return _signing_input({**h, "alg": "none"}, c) + "."


def _flip_signature(token: str) -> str:
    data, _, signature = token.rpartition(".")
    raw = bytearray(_unb64(signature))
    raw[len(raw) // 2] ^= 0x01
    return data + "." + _b64(bytes(raw))


def _without(c: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in c.items() if k != name}




def hs256_key() -> bytes:
    """The HS256 key, derived here independently of the server's code: HKDF-SHA256 of
    jwt.secret under the label for access tokens, as text (docs/security.md)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"passwordless hs256-access-token-key")
    return _b64(hkdf.derive(SECRET.encode())).encode()


KEY = hs256_key()
FORGERIES: dict[str, Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], str]] = {
    "alg none": lambda h, c, s: _none(h, c),
    "alg none, no kid": lambda h, c, s: _none(_without(h, "kid"), c),
    "wrong secret": lambda h, c, s: _hs256(h, c, b"not-the-secret-0123456789-abcdefghijklmnop"),
    "wrong aud": lambda h, c, s: _hs256(h, {**c, "aud": "someone-else"}, KEY),
    "aud list without ours": lambda h, c, s: _hs256(h, {**c, "aud": ["someone-else"]}, KEY),
    "wrong iss": lambda h, c, s: _hs256(h, {**c, "iss": "https://evil.example"}, KEY),
    "typ JWT": lambda h, c, s: _hs256({**h, "typ": "JWT"}, c, KEY),
    "no typ": lambda h, c, s: _hs256(_without(h, "typ"), c, KEY),
    "missing sid": lambda h, c, s: _hs256(h, _without(c, "sid"), KEY),
    "missing exp": lambda h, c, s: _hs256(h, _without(c, "exp"), KEY),
    "exp in the past": lambda h, c, s: _hs256(h, {**c, "exp": c["iat"] - 1}, KEY),
    "exp as a string": lambda h, c, s: _hs256(h, {**c, "exp": str(c["exp"])}, KEY),
    "alg ES256 with an attacker's key": lambda h, c, s: jwt.encode(
        c, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"typ": "at+jwt", "kid": h["kid"]}
    ),
    "unknown kid": lambda h, c, s: _hs256({**h, "kid": "someone-elses-key"}, c, KEY),
    "refresh token as bearer": lambda h, c, s: str(s["refresh_token"]),
    "signature bytes altered": lambda h, c, s: _flip_signature(str(s["access_token"])),
    "signature removed": lambda h, c, s: str(s["access_token"]).rpartition(".")[0] + ".",
    "missing jti": lambda h, c, s: _hs256(h, _without(c, "jti"), KEY),
    "exp true": lambda h, c, s: _hs256(h, {**c, "exp": True}, KEY),
    "nbf in the future": lambda h, c, s: _hs256(h, {**c, "nbf": c["exp"] + 3600}, KEY),
    "claims a list": lambda h, c, s: _b64(json.dumps(h).encode()) + "." + _b64(b"[1]") + "." + _b64(
        hmac.new(KEY, (_b64(json.dumps(h).encode()) + "." + _b64(b"[1]")).encode(), hashlib.sha256).digest()
    ),
    "header not JSON": lambda h, c, s: "bm90IGpzb24." + str(s["access_token"]).split(".", 1)[1],
    "padding in the signature": lambda h, c, s: str(s["access_token"]) + "=",
    "a fourth segment": lambda h, c, s: str(s["access_token"]) + ".e30",
    "non-alphabet characters": lambda h, c, s: str(s["access_token"]).replace(".", ".*", 1),
    "crit header": lambda h, c, s: _hs256({**h, "crit": ["exp"]}, c, KEY),
}


async def test_a_hand_built_token_with_the_right_secret_is_accepted(make_config: Callable[..., Config]) -> None:
    """The control for the forgeries below: the hand-built token itself is sound."""
    config = make_config(_toml())
    async with running(config) as (_, client):
        signed_in = await _sign_in(client, config, "ann@example.com")
        header, claims = _parts(signed_in["access_token"])
        r = await _me(client, _hs256(header, claims, KEY))
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_forged_tokens_are_refused(make_config: Callable[..., Config], forgery: str) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        signed_in = await _sign_in(client, config, "ann@example.com")
        header, claims = _parts(signed_in["access_token"])
        await _assert_refused(client, FORGERIES[forgery](header, claims, signed_in))
        assert (await _me(client, signed_in["access_token"])).status_code == 200


async def test_an_expired_token_is_refused(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    clock = FakeClock()
    async with running(config, clock=clock) as (_, client):
        signed_in = await _sign_in(client, config, "ann@example.com")
        clock.advance(ACCESS_TTL - 5)
        assert (await _me(client, signed_in["access_token"])).status_code == 200
        clock.advance(6)
        await _assert_refused(client, signed_in["access_token"])
        # the session itself lives on: a refresh gives a working token
        r = await client.post("/auth/refresh", json={"refresh_token": signed_in["refresh_token"]})
        assert r.status_code == 200
        assert (await _me(client, r.json()["access_token"])).status_code == 200


# --- JWKS ---------------------------------------------------------------------------------------


async def test_hs256_publishes_no_keys(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        r = await client.get("/.well-known/jwks.json")
        assert r.status_code == 200
        assert r.json() == {"keys": []}
        assert SECRET not in r.text


async def _jwks(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    keys: list[dict[str, Any]] = r.json()["keys"]
    return keys


@pytest.mark.parametrize(("algorithm", "kty", "crv"), ASYMMETRIC)
async def test_jwks_publishes_one_public_key(
    make_config: Callable[..., Config], algorithm: str, kty: str, crv: str
) -> None:
    config = make_config(_toml(algorithm))
    async with running(config) as (_, client):
        [key] = await _jwks(client)
        assert key["kty"] == kty
        assert key["crv"] == crv
        assert key["alg"] == algorithm
        assert key["use"] == "sig"
        assert isinstance(key["kid"], str) and key["kid"]
        assert "d" not in key
        assert "x" in key
        assert ("y" in key) == (kty == "EC")


@pytest.mark.parametrize(("algorithm", "kty", "crv"), ASYMMETRIC)
async def test_access_token_verifies_with_the_published_key(
    make_config: Callable[..., Config], algorithm: str, kty: str, crv: str
) -> None:
    config = make_config(_toml(algorithm))
    async with running(config) as (_, client):
        jwks = {"keys": await _jwks(client)}
        signed_in = await _sign_in(client, config, "ann@example.com")
        token = signed_in["access_token"]
        header = jwt.get_unverified_header(token)
        assert header["alg"] == algorithm
        assert header["typ"] == "at+jwt"
        assert header["kid"] == jwks["keys"][0]["kid"]

        key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
        claims = jwt.decode(token, key, algorithms=[algorithm], audience="passwordless", issuer=PUBLIC_URL)
        assert claims["sub"] == signed_in["user"]["id"]
        assert claims["exp"] == claims["iat"] + ACCESS_TTL
        assert (await _me(client, token)).status_code == 200
        # and the HS256 secret plays no part in this mode
        await _assert_refused(client, _hs256(*_parts(token), KEY))


def _private_pem(config: Config, kid: str) -> bytes:
    with connection(config) as conn:
        row = conn.execute("SELECT private_key FROM signing_keys WHERE kid = ?", (kid,)).fetchone()
    assert row is not None
    return str(row[0]).encode()


@pytest.mark.parametrize(("algorithm", "kty", "crv"), ASYMMETRIC)
async def test_public_key_as_hmac_secret_is_refused(
    make_config: Callable[..., Config], algorithm: str, kty: str, crv: str
) -> None:
    config = make_config(_toml(algorithm))
    async with running(config) as (_, client):
        response = await client.get("/.well-known/jwks.json")
        [jwk] = response.json()["keys"]
        signed_in = await _sign_in(client, config, "ann@example.com")
        header, claims = _parts(signed_in["access_token"])

        # control: a hand-built token signed with the real private key is accepted
        private = serialization.load_pem_private_key(_private_pem(config, jwk["kid"]), None)
        genuine = jwt.encode(claims, private, algorithm=algorithm, headers={"typ": "at+jwt", "kid": jwk["kid"]})
        assert (await _me(client, genuine)).status_code == 200

        public = jwt.PyJWK(jwk, algorithm).key
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        secrets = [
            pem,
            pem.strip(),
            der,
            response.content,
            json.dumps(jwk).encode(),
            json.dumps(jwk, separators=(",", ":")).encode(),
            json.dumps(jwk, sort_keys=True).encode(),
            jwk["x"].encode(),
        ]
        for secret in secrets:
            await _assert_refused(client, _hs256({**header, "kid": jwk["kid"]}, claims, secret))


# --- keys rotate --------------------------------------------------------------------------------


def _config_file(config: Config) -> Path:
    return Path(config.database.path).parent / "config.toml"


WAIT = 300 + 60  # the JWKS's max-age plus the servers' key reload interval (API.md)


def _rotate(config: Config, *flags: str) -> tuple[float, str]:
    """`passwordless keys rotate`: when it ran and what it printed."""
    path = _config_file(config)
    rotated_at = time.time()
    result = cli("keys", "rotate", *flags, "--config", str(path), cwd=path.parent, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return rotated_at, result.stdout


async def _kid_signing(client: httpx.AsyncClient, config: Config, email: str) -> str:
    kid: str = jwt.get_unverified_header((await _sign_in(client, config, email))["access_token"])["kid"]
    return kid


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
async def test_keys_rotate(make_config: Callable[..., Config], algorithm: str) -> None:
    config = make_config(_toml(algorithm))
    async with running(config) as (_, client):
        [first] = await _jwks(client)
        before = await _sign_in(client, config, "ann@example.com")
    assert jwt.get_unverified_header(before["access_token"])["kid"] == first["kid"]

    rotated_at, printed = _rotate(config)

    # published at once, signing nothing yet: a verifier that cached the JWKS just before the
    # rotation must not meet the new kid
    async with running(config, clock=FakeClock(rotated_at + WAIT - 5)) as (_, client):
        keys = await _jwks(client)
        assert len(keys) == 2
        assert all("d" not in k for k in keys)
        [new_kid] = {k["kid"] for k in keys} - {first["kid"]}
        assert new_kid in printed
        assert await _kid_signing(client, config, "bob@example.com") == first["kid"]

    # the command says when signing switches: an absolute UTC time and the delay
    switch = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(rotated_at) + WAIT))
    later = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(rotated_at) + WAIT + 1))
    assert switch in printed or later in printed, printed
    assert f"in {WAIT} s" in printed or f"in {WAIT - 1} s" in printed, printed

    async with running(config, clock=FakeClock(rotated_at + WAIT + 5)) as (_, client):
        after = await _sign_in(client, config, "bob@example.com")
        assert jwt.get_unverified_header(after["access_token"])["kid"] == new_kid
        keys = await _jwks(client)
        # a token signed before the rotation still verifies, here and with the published set
        assert (await _me(client, before["access_token"])).status_code == 200
        assert (await _me(client, after["access_token"])).status_code == 200
        jwks = jwt.PyJWKSet.from_dict({"keys": keys})
        for token in (before["access_token"], after["access_token"]):
            kid = jwt.get_unverified_header(token)["kid"]
            jwt.decode(  # leeway: the server's clock is WAIT ahead of this one
                token, jwks[kid], algorithms=[algorithm], audience="passwordless", issuer=PUBLIC_URL, leeway=WAIT + 10
            )

    async with running(config, clock=FakeClock(rotated_at + WAIT + ACCESS_TTL - 300)) as (_, client):
        assert {k["kid"] for k in await _jwks(client)} == {first["kid"], new_kid}

    # well past the switch plus access_ttl (leaving room for a server's key-reload interval)
    async with running(config, clock=FakeClock(rotated_at + WAIT + ACCESS_TTL + 300)) as (_, client):
        assert [k["kid"] for k in await _jwks(client)] == [new_kid]
        later_token = await _sign_in(client, config, "cat@example.com")
        assert jwt.get_unverified_header(later_token["access_token"])["kid"] == new_kid
        assert (await _me(client, later_token["access_token"])).status_code == 200


async def test_keys_rotate_now_signs_at_once(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml("ES256"))
    async with running(config) as (_, client):
        [first] = await _jwks(client)
    rotated_at, printed = _rotate(config, "--now")
    assert "in 0 s" in printed, printed
    async with running(config, clock=FakeClock(rotated_at + 1)) as (_, client):
        [new_kid] = {k["kid"] for k in await _jwks(client)} - {first["kid"]}
        assert await _kid_signing(client, config, "ann@example.com") == new_kid


async def test_rotate_now_during_a_wait_stops_the_waiting_key_too(make_config: Callable[..., Config]) -> None:
    """An emergency during a planned rotation: the key that was about to sign never does."""
    config = make_config(_toml("ES256"))
    async with running(config) as (_, client):
        [first] = await _jwks(client)
    rotated_at, _ = _rotate(config)
    async with running(config) as (_, client):
        [planned] = {k["kid"] for k in await _jwks(client)} - {first["kid"]}
    _rotate(config, "--now")
    async with running(config, clock=FakeClock(rotated_at + WAIT + 5)) as (_, client):
        published = {k["kid"] for k in await _jwks(client)}
        [emergency] = published - {first["kid"], planned}
        assert await _kid_signing(client, config, "ann@example.com") == emergency


async def test_a_running_server_switches_to_the_rotated_key_by_itself(
    make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keys rotate` beside a running server: its key reload picks the new key up (published at
    once) and the server starts signing with it at the time the command printed, not before."""
    monkeypatch.setattr(keys_service, "KEY_RELOAD_SECONDS", 0.05)
    config = make_config(_toml("EdDSA"))
    clock = FakeClock()
    async with running(config, clock=clock) as (_, client):
        [first] = await _jwks(client)
        clock.now, _ = _rotate(config)
        for _ in range(200):  # the reload runs every 0.05 s of real time
            if len(published := await _jwks(client)) == 2:
                break
            await anyio.sleep(0.05)
        [new_kid] = {k["kid"] for k in published} - {first["kid"]}
        signs_from = _signs_from(config, new_kid)
        clock.now = signs_from - 1
        assert await _kid_signing(client, config, "ann@example.com") == first["kid"]
        clock.now = signs_from
        assert await _kid_signing(client, config, "bob@example.com") == new_kid


def _signs_from(config: Config, kid: str) -> int:
    with connection(config) as conn:
        value: int = conn.execute("SELECT signs_from FROM signing_keys WHERE kid = ?", (kid,)).fetchone()[0]
    return value


async def test_a_token_signed_before_a_running_server_notices_the_rotation_verifies_until_it_expires(
    make_config: Callable[..., Config],
) -> None:
    """`keys rotate --now` beside a running server: the server picks the new key up within a minute and
    signs with the old one until then. The old public key must stay published until those
    tokens have expired too (CONFIG.md: "until tokens signed with it have expired")."""
    config = make_config(_toml("ES256"))
    path = _config_file(config)
    clock = FakeClock()
    async with running(config, clock=clock) as (_, client):
        rotated_at = time.time()
        result = cli("keys", "rotate", "--now", "--config", str(path), cwd=path.parent, env=clean_env())
        assert result.returncode == 0, result.stderr
        clock.now = rotated_at + 50  # before the server's next key reload
        late = await _sign_in(client, config, "ann@example.com")
    kid = jwt.get_unverified_header(late["access_token"])["kid"]
    expires_at = jwt.decode(late["access_token"], options={"verify_signature": False})["exp"]

    async with running(config, clock=FakeClock(expires_at - 5)) as (_, client):
        assert kid in {k["kid"] for k in await _jwks(client)}
        assert (await _me(client, late["access_token"])).status_code == 200


async def test_keys_rotate_is_refused_with_hs256(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml("HS256"))
    path = _config_file(config)
    result = cli("keys", "rotate", "--config", str(path), cwd=path.parent, env=clean_env())
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "HS256" in lines[0]
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    with connection(config) as conn:
        assert conn.execute("SELECT COUNT(*) FROM signing_keys").fetchone()[0] == 0
    async with running(config) as (_, client):
        assert await _jwks(client) == []


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
async def test_keys_are_kept_across_restarts(make_config: Callable[..., Config], algorithm: str) -> None:
    config = make_config(_toml(algorithm))
    async with running(config) as (_, client):
        first = await _jwks(client)
        signed_in = await _sign_in(client, config, "ann@example.com")
    async with running(config) as (_, client):
        assert await _jwks(client) == first
        assert (await _me(client, signed_in["access_token"])).status_code == 200
        again = await _sign_in(client, config, "bob@example.com")
        assert jwt.get_unverified_header(again["access_token"])["kid"] == first[0]["kid"]
    with connection(config) as conn:
        assert conn.execute("SELECT COUNT(*) FROM signing_keys").fetchone()[0] == 1
