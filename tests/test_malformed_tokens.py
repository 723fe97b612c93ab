"""Malformed access tokens and session cookies (issue 15 item 5): whatever a client sends as a
Bearer token or as the session cookie, the answer is 401 invalid_token / unauthorized, never a
500. The attack that started it: a JOSE header of deeply nested JSON raised RecursionError."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from passwordless.config.settings import Config
from passwordless.sessions.http import cookie_name
from tests.support.app import deps_of, running
from tests.support.live import LiveServer
from tests.support.signin import request_sign_in
from tests.test_tokens import _toml, hs256_key

pytestmark = pytest.mark.anyio

# Every place that decodes a bearer token or the session cookie.
AUTHENTICATED = [("GET", "/auth/me"), ("GET", "/auth/sessions"), ("POST", "/auth/logout"), ("GET", "/auth/passkeys")]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(header: object, claims: object, key: bytes) -> str:
    """A token with the right signature over whatever header and claims: only the server's key
    holder can make one, so these check the claim checks, not the signature check."""
    data = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return data + "." + _b64(hmac.new(key, data.encode(), hashlib.sha256).digest())


def _nested(depth: int) -> str:
    return _b64(b"[" * depth)


MALFORMED: dict[str, Callable[[dict[str, Any], dict[str, Any], str], str]] = {
    "deeply nested header": lambda h, c, t: _nested(100_000) + ".e30.AAAA",
    "nested header within the size bound": lambda h, c, t: _nested(1_500) + "." + t.split(".", 1)[1],
    "nested header object": lambda h, c, t: _b64(b'{"a":' * 5_000) + ".e30.AAAA",
    "huge token": lambda h, c, t: t + "A" * 60_000,
    "huge payload": lambda h, c, t: t.split(".")[0] + "." + _b64(b"{" + b" " * 40_000 + b"}") + ".AAAA",
    "truncated in the header": lambda h, c, t: t[:10],
    "truncated in the payload": lambda h, c, t: t[: len(t.split(".")[0]) + 9],
    "truncated signature": lambda h, c, t: t[:-7],
    "only dots": lambda h, c, t: "..",
    "one segment": lambda h, c, t: "abc",
    "non-ASCII": lambda h, c, t: t.replace("A", "é", 3),
    "non-ASCII header": lambda h, c, t: "ÿÿÿÿ." + t.split(".", 1)[1],
    "NUL bytes": lambda h, c, t: "\x00" + t,
    "header is a number": lambda h, c, t: _b64(b"1e999999") + ".e30.AAAA",
    "header is a huge integer": lambda h, c, t: _b64(b"9" * 5000) + ".e30.AAAA",
    "header not UTF-8": lambda h, c, t: _b64(b"\xff\xfe{") + ".e30.AAAA",
    "header is a list": lambda h, c, t: _b64(b"[]") + "." + t.split(".", 1)[1],
    "kid is a list": lambda h, c, t: _signed({**h, "kid": [h["kid"]]}, c, hs256_key()),
    "kid is an object": lambda h, c, t: _signed({**h, "kid": {"x": 1}}, c, hs256_key()),
    "exp as a string": lambda h, c, t: _signed(h, {**c, "exp": str(c["exp"])}, hs256_key()),
    "exp as a float": lambda h, c, t: _signed(h, {**c, "exp": c["exp"] + 0.5}, hs256_key()),
    "exp infinite": lambda h, c, t: _signed(h, {**c, "exp": float("inf")}, hs256_key()),
    "exp null": lambda h, c, t: _signed(h, {**c, "exp": None}, hs256_key()),
    "exp true": lambda h, c, t: _signed(h, {**c, "exp": True}, hs256_key()),
    "aud a list of junk": lambda h, c, t: _signed(h, {**c, "aud": [[1], {"a": 2}, None, 3.5]}, hs256_key()),
    "aud an object": lambda h, c, t: _signed(h, {**c, "aud": {"passwordless": 1}}, hs256_key()),
    "iss a list": lambda h, c, t: _signed(h, {**c, "iss": [c["iss"]]}, hs256_key()),
    "nbf a string": lambda h, c, t: _signed(h, {**c, "nbf": "0"}, hs256_key()),
    "sid an object": lambda h, c, t: _signed(h, {**c, "sid": {"id": c["sid"]}}, hs256_key()),
    "sid a list": lambda h, c, t: _signed(h, {**c, "sid": [c["sid"]]}, hs256_key()),
    "sub null": lambda h, c, t: _signed(h, {**c, "sub": None}, hs256_key()),
    "claims a list": lambda h, c, t: _signed(h, [c], hs256_key()),
    "claims a string": lambda h, c, t: _signed(h, "claims", hs256_key()),
    "claims nested deeply": lambda h, c, t: _signed(h, json.loads("[" * 500 + "]" * 500), hs256_key()),
}


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, claims, _ = token.split(".")
    unb64: Callable[[str], Any] = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    return unb64(header), unb64(claims)


async def _signed_in_token(client: httpx.AsyncClient, config: Config) -> str:
    token, _ = await request_sign_in(client, config, "ann@example.com")
    r = await client.post("/auth/magic-link/verify", json={"token": token})
    assert r.status_code == 200, r.text
    access: str = r.json()["access_token"]
    return access


async def test_the_deeply_nested_header_attack_gets_401_on_every_endpoint(
    make_config: Callable[..., Config],
) -> None:
    config = make_config(_toml())
    token = _nested(100_000) + ".e30.AAAA"
    async with running(config) as (_, client):
        for method, path in AUTHENTICATED:
            r = await client.request(method, path, headers={"authorization": f"Bearer {token}"})
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize("kind", list(MALFORMED))
async def test_malformed_bearer_tokens_get_401(make_config: Callable[..., Config], kind: str) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        good = await _signed_in_token(client, config)
        header, claims = _parts(good)
        token = MALFORMED[kind](header, claims, good)
        for method, path in AUTHENTICATED:
            # raw bytes: a client may send any octets, not only what httpx would encode
            r = await client.request(method, path, headers={"authorization": f"Bearer {token}".encode()})
            assert r.status_code == 401, (path, r.status_code, r.text[:200])
            assert r.json()["error"]["code"] in ("invalid_token", "unauthorized")
        # the server still works for the real token
        assert (await client.get("/auth/me", headers={"authorization": f"Bearer {good}"})).status_code == 200


async def test_a_hand_signed_token_with_sound_claims_is_accepted(make_config: Callable[..., Config]) -> None:
    """The control for the claim cases above: the hand-made signature is the server's own."""
    config = make_config(_toml())
    async with running(config) as (_, client):
        good = await _signed_in_token(client, config)
        header, claims = _parts(good)
        r = await client.get("/auth/me", headers={"authorization": f"Bearer {_signed(header, claims, hs256_key())}"})
        assert r.status_code == 200, r.text


COOKIES = {
    "nested": _nested(100_000),
    "huge": "A" * 3_000,
    "dots": "....",
    "non-ASCII": "é" * 40,
    "itsdangerous shape, junk": "eyJhIjoxfQ.AAAAAA.BBBBBB",
    "compressed marker": ".eJwLSS0u0QcAAP__.AAAAAA.BBBBBB",
    "quotes": '"abc\\"def"',
}


@pytest.mark.parametrize("kind", list(COOKIES))
async def test_malformed_session_cookies_get_401(make_config: Callable[..., Config], kind: str) -> None:
    config = make_config(_toml())
    async with running(config) as (app, client):
        cookie = {"cookie": f"{cookie_name(deps_of(app).sessions)}={COOKIES[kind]}".encode()}
        for path in ("/auth/me", "/auth/sessions", "/auth/passkeys"):
            r = await client.get(path, headers=cookie)
            assert r.status_code == 401, (path, r.status_code, r.text[:200])
        r = await client.get("/account", headers=cookie)
        assert r.status_code < 500, r.text[:200]


def test_the_real_server_answers_the_attack_with_401_and_logs_no_traceback(live_server: LiveServer) -> None:
    """The reported request: about 3 KB of nested JSON as the JOSE header, against `passwordless
    serve` itself (uvicorn, logging), where it answered 500 with a 4 KB traceback each time."""
    token = _nested(2_200) + ".e30.AAAA"
    with httpx.Client(base_url=live_server.public_url, trust_env=False, timeout=10) as http:
        for method, path in AUTHENTICATED:
            r = http.request(method, path, headers={"authorization": f"Bearer {token}"})
            assert r.status_code == 401, (path, r.text[:200])
            assert r.json()["error"]["code"] == "invalid_token"
        assert http.get("/readiness").status_code == 200
    logs = live_server.logs()
    assert "Traceback" not in logs and "RecursionError" not in logs
