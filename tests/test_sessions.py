"""Tokens and sessions (API.md, "Tokens and sessions", "Errors", "Audit log"): refresh with
rotation and reuse detection, logout, /auth/me, /auth/sessions, ending a session, and the
browser session cookie with its Origin check. Each test signs in for real: a magic link is
requested, its token read from the email queue and spent."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from itsdangerous import URLSafeTimedSerializer

from passwordless.config.settings import Config
from tests.support.app import PEER, FakeClock, running
from tests.support.engine import as_dict, connection
from tests.support.signin import bearer, request_sign_in

pytestmark = pytest.mark.anyio

PUBLIC_URL = "http://auth.example.test"
SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
COOKIE = "pl_session"
FOREIGN_ORIGIN = "https://evil.example"
APP_ORIGIN = "https://app.example.test"
REFRESH_TTL = 30 * 24 * 3600


def _toml(extra: str = "") -> str:
    return (
        f'[server]\npublic_url = "{PUBLIC_URL}"\n\n'
        f'[jwt]\nsecret = "{SECRET}"\n\n'
        '[email]\ntransport = "file"\n\n'
        "[rate_limit]\nenabled = false\n\n"
        f"{extra}"
    )


# --- signing in: a magic link read from the delivered email -----------------------------------


async def _request_link(client: httpx.AsyncClient, config: Config, email: str) -> str:
    token, _ = await request_sign_in(client, config, email.lower())
    return token


async def _sign_in(
    client: httpx.AsyncClient, config: Config, email: str, user_agent: str = "pytest-agent/1"
) -> dict[str, Any]:
    token = await _request_link(client, config, email)
    r = await client.post("/auth/magic-link/verify", json={"token": token}, headers={"user-agent": user_agent})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _form_sign_in(client: httpx.AsyncClient, config: Config, email: str) -> str:
    """Sign in as the hosted page does; returns the session cookie's value."""
    token = await _request_link(client, config, email)
    r = await client.post(
        "/auth/magic-link/verify",
        content=urlencode({"token": token}),
        headers={"content-type": "application/x-www-form-urlencoded", "origin": PUBLIC_URL},
    )
    assert r.status_code == 303, r.text
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(r.headers["set-cookie"])
    assert COOKIE in cookie
    assert cookie[COOKIE]["httponly"]
    assert cookie[COOKIE]["samesite"].lower() == "lax"
    client.cookies.clear()  # every test request below names its cookie explicitly
    return cookie[COOKIE].value


def _sid(access_token: str) -> str:
    sid: str = jwt.decode(access_token, options={"verify_signature": False})["sid"]
    return sid


def _cookie(value: str, origin: str | None = None) -> dict[str, str]:
    headers = {"cookie": f"{COOKIE}={value}"}
    if origin is not None:
        headers["origin"] = origin
    return headers


async def _me(client: httpx.AsyncClient, access_token: str) -> int:
    return (await client.get("/auth/me", headers=bearer(access_token))).status_code


async def _refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": refresh_token})


def _error_code(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    code: str = body["error"]["code"]
    return code


def _audit(config: Config, event: str) -> list[dict[str, Any]]:
    with connection(config) as conn:
        rows = conn.execute(
            "SELECT user_id, email, ip, success, details FROM audit_logs WHERE event_type = ? ORDER BY id", (event,)
        ).fetchall()
    return [{**as_dict(r), "details": json.loads(r["details"])} for r in rows]


def _assert_token_response(body: dict[str, Any], email: str) -> None:
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "user"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["user"]["email"] == email
    assert isinstance(body["refresh_token"], str) and len(body["refresh_token"]) >= 32


# --- refresh ------------------------------------------------------------------------------------


async def test_refresh_rotates_and_reusing_the_old_token_revokes_the_session(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        first = await _sign_in(client, config, "ann@example.com")

        r = await _refresh(client, first["refresh_token"])
        assert r.status_code == 200, r.text
        assert "no-store" in r.headers["cache-control"]
        second = r.json()
        _assert_token_response(second, "ann@example.com")
        assert second["user"] == first["user"]
        assert second["refresh_token"] != first["refresh_token"]
        assert _sid(second["access_token"]) == _sid(first["access_token"])
        assert await _me(client, second["access_token"]) == 200
        [refreshed] = _audit(config, "session_refreshed")
        assert refreshed["success"] == 1 and refreshed["user_id"] == first["user"]["id"]

        r = await _refresh(client, first["refresh_token"])
        assert r.status_code == 401
        assert _error_code(r) == "refresh_token_reused"

        # the whole session is gone: the newest refresh token and every access token of it
        r = await _refresh(client, second["refresh_token"])
        assert r.status_code == 401
        assert await _me(client, second["access_token"]) == 401
        assert await _me(client, first["access_token"]) == 401

        [reused] = _audit(config, "refresh_token_reused")
        assert reused["success"] == 0
        assert reused["user_id"] == first["user"]["id"]
        assert reused["details"].get("session_id") == _sid(first["access_token"])
        assert reused["ip"] == PEER[0]
        # no token is ever written to the audit log
        with connection(config) as conn:
            dump = json.dumps([tuple(r) for r in conn.execute("SELECT * FROM audit_logs").fetchall()])
        for body in (first, second):
            assert body["refresh_token"] not in dump
            assert body["access_token"] not in dump


async def test_a_refresh_token_two_generations_old_counts_as_reuse(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        t1 = await _sign_in(client, config, "ann@example.com")
        t2 = (await _refresh(client, t1["refresh_token"])).json()
        r = await _refresh(client, t2["refresh_token"])
        assert r.status_code == 200
        t3 = r.json()
        assert len({t1["refresh_token"], t2["refresh_token"], t3["refresh_token"]}) == 3

        r = await _refresh(client, t1["refresh_token"])
        assert r.status_code == 401
        assert _error_code(r) == "refresh_token_reused"
        assert (await _refresh(client, t3["refresh_token"])).status_code == 401
        assert await _me(client, t3["access_token"]) == 401
        assert len(_audit(config, "refresh_token_reused")) == 1


async def test_reuse_revokes_only_that_session(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        mine = await _sign_in(client, config, "ann@example.com")
        other = await _sign_in(client, config, "ann@example.com")
        assert (await _refresh(client, mine["refresh_token"])).status_code == 200
        assert _error_code(await _refresh(client, mine["refresh_token"])) == "refresh_token_reused"
        assert await _me(client, other["access_token"]) == 200
        assert (await _refresh(client, other["refresh_token"])).status_code == 200


@pytest.mark.parametrize("garbage", ["garbage", "x" * 43, "eyJhbGciOiJIUzI1NiJ9.e30.abc"])
async def test_garbage_refresh_token_is_invalid_token(make_config: Callable[..., Config], garbage: str) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        signed_in = await _sign_in(client, config, "ann@example.com")
        r = await _refresh(client, garbage)
        assert r.status_code == 401
        assert _error_code(r) == "invalid_token"
        assert _audit(config, "refresh_token_reused") == []
        # an access token is not a refresh token either
        r = await _refresh(client, signed_in["access_token"][:256])
        assert r.status_code == 401
        assert await _me(client, signed_in["access_token"]) == 200


async def test_refresh_after_refresh_ttl_is_refused(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    clock = FakeClock()
    async with running(config, clock=clock) as (_, client):
        early = await _sign_in(client, config, "ann@example.com")
        late = await _sign_in(client, config, "ann@example.com")
        clock.advance(REFRESH_TTL - 60)
        assert (await _refresh(client, early["refresh_token"])).status_code == 200
        clock.advance(61)
        r = await _refresh(client, late["refresh_token"])
        assert r.status_code == 401
        assert _error_code(r) == "invalid_token"


# --- logout -------------------------------------------------------------------------------------


async def test_logout_with_bearer_revokes_the_session_before_the_token_expires(
    make_config: Callable[..., Config],
) -> None:
    config = make_config(_toml())
    clock = FakeClock()
    async with running(config, clock=clock) as (_, client):
        signed_in = await _sign_in(client, config, "ann@example.com")
        still = await _sign_in(client, config, "ann@example.com")
        assert await _me(client, signed_in["access_token"]) == 200

        r = await client.post("/auth/logout", headers=bearer(signed_in["access_token"]))
        assert r.status_code == 204
        assert r.content == b""
        clock.advance(10)  # far from the token's exp
        r = await client.get("/auth/me", headers=bearer(signed_in["access_token"]))
        assert r.status_code == 401
        _error_code(r)
        assert (await _refresh(client, signed_in["refresh_token"])).status_code == 401
        assert await _me(client, still["access_token"]) == 200

        [row] = _audit(config, "logout")
        assert row["success"] == 1
        assert row["user_id"] == signed_in["user"]["id"]
        assert row["details"].get("session_id") == _sid(signed_in["access_token"])


async def test_logout_with_a_refresh_token(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        signed_in = await _sign_in(client, config, "ann@example.com")
        r = await client.post("/auth/logout", json={"refresh_token": signed_in["refresh_token"]})
        assert r.status_code == 204
        r = await _refresh(client, signed_in["refresh_token"])
        assert r.status_code == 401
        assert _error_code(r) == "invalid_token"
        assert await _me(client, signed_in["access_token"]) == 401
        [row] = _audit(config, "logout")
        assert row["success"] == 1 and row["user_id"] == signed_in["user"]["id"]


async def test_logout_without_credentials_is_401(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        r = await client.post("/auth/logout")
        assert r.status_code == 401
        assert _error_code(r) == "unauthorized"
        assert _audit(config, "logout") == []


# --- /auth/me -----------------------------------------------------------------------------------


async def test_me_describes_the_user(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    clock = FakeClock()
    async with running(config, clock=clock) as (_, client):
        signed_in = await _sign_in(client, config, "Ann@Example.com")
        r = await client.get("/auth/me", headers=bearer(signed_in["access_token"]))
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"id", "email", "created_at", "passkeys"}
        assert body["id"] == signed_in["user"]["id"]
        assert body["email"] == "ann@example.com"
        assert body["passkeys"] == 0
        assert isinstance(body["created_at"], int) and abs(body["created_at"] - clock.now) <= 1


async def test_me_without_a_token_is_401_unauthorized(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        r = await client.get("/auth/me")
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/json")
        assert _error_code(r) == "unauthorized"


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer", ""])
async def test_me_needs_the_bearer_scheme(make_config: Callable[..., Config], scheme: str) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        signed_in = await _sign_in(client, config, "ann@example.com")
        value = {
            "Basic": "Basic YW5uOnNlY3JldA==",
            "Token": f"Token {signed_in['access_token']}",
            "Bearer": "Bearer ",
            "": signed_in["access_token"],
        }[scheme]
        r = await client.get("/auth/me", headers={"authorization": value})
        assert r.status_code == 401
        assert _error_code(r) in {"unauthorized", "invalid_token"}
        assert await _me(client, signed_in["access_token"]) == 200


# --- /auth/sessions -----------------------------------------------------------------------------


async def test_sessions_lists_the_callers_active_sessions(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        one = await _sign_in(client, config, "ann@example.com", user_agent="agent-one/1.0")
        two = await _sign_in(client, config, "ann@example.com", user_agent="agent-two/2.0")
        bob = await _sign_in(client, config, "bob@example.com", user_agent="agent-bob/3.0")
        ended = await _sign_in(client, config, "ann@example.com", user_agent="agent-ended/4.0")
        assert (await client.post("/auth/logout", headers=bearer(ended["access_token"]))).status_code == 204

        r = await client.get("/auth/sessions", headers=bearer(two["access_token"]))
        assert r.status_code == 200
        sessions = r.json()["sessions"]
        assert {s["id"] for s in sessions} == {_sid(one["access_token"]), _sid(two["access_token"])}
        by_id = {s["id"]: s for s in sessions}
        for s in sessions:
            assert set(s) == {"id", "created_at", "last_used_at", "ip", "user_agent", "current"}
            assert isinstance(s["created_at"], int) and isinstance(s["last_used_at"], int)
            assert s["ip"] == PEER[0]
        assert by_id[_sid(one["access_token"])]["user_agent"] == "agent-one/1.0"
        assert by_id[_sid(two["access_token"])]["user_agent"] == "agent-two/2.0"
        assert by_id[_sid(two["access_token"])]["current"] is True
        assert by_id[_sid(one["access_token"])]["current"] is False

        r = await client.get("/auth/sessions", headers=bearer(bob["access_token"]))
        [only] = r.json()["sessions"]
        assert only["id"] == _sid(bob["access_token"])
        assert only["current"] is True and only["user_agent"] == "agent-bob/3.0"


async def test_sessions_needs_a_token(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        r = await client.get("/auth/sessions")
        assert r.status_code == 401
        assert _error_code(r) == "unauthorized"


# --- DELETE /auth/sessions/{id} -----------------------------------------------------------------


async def test_ending_another_own_session(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        laptop = await _sign_in(client, config, "ann@example.com")
        phone = await _sign_in(client, config, "ann@example.com")
        laptop_sid = _sid(laptop["access_token"])

        r = await client.delete(f"/auth/sessions/{laptop_sid}", headers=bearer(phone["access_token"]))
        assert r.status_code == 204
        assert await _me(client, laptop["access_token"]) == 401
        assert (await _refresh(client, laptop["refresh_token"])).status_code == 401
        assert await _me(client, phone["access_token"]) == 200
        r = await client.get("/auth/sessions", headers=bearer(phone["access_token"]))
        assert [s["id"] for s in r.json()["sessions"]] == [_sid(phone["access_token"])]

        [row] = _audit(config, "sessions_revoked")
        assert row["success"] == 1
        assert row["user_id"] == phone["user"]["id"]
        assert row["details"].get("session_id") == laptop_sid


async def test_ending_someone_elses_or_an_unknown_session_is_404(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        ann = await _sign_in(client, config, "ann@example.com")
        bob = await _sign_in(client, config, "bob@example.com")
        for session_id in (_sid(bob["access_token"]), "0190e0b2-0000-7000-8000-000000000000", "nope"):
            r = await client.delete(f"/auth/sessions/{session_id}", headers=bearer(ann["access_token"]))
            assert r.status_code == 404
            assert _error_code(r) == "not_found"
        assert await _me(client, bob["access_token"]) == 200
        assert await _me(client, ann["access_token"]) == 200
        assert _audit(config, "sessions_revoked") == []


async def test_ending_a_session_needs_a_token(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        ann = await _sign_in(client, config, "ann@example.com")
        r = await client.delete(f"/auth/sessions/{_sid(ann['access_token'])}")
        assert r.status_code == 401
        assert await _me(client, ann["access_token"]) == 200


# --- the browser session cookie -----------------------------------------------------------------


async def test_cookie_authenticates_reads(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        cookie = await _form_sign_in(client, config, "ann@example.com")
        r = await client.get("/auth/me", headers=_cookie(cookie))
        assert r.status_code == 200
        assert r.json()["email"] == "ann@example.com"
        r = await client.get("/auth/sessions", headers=_cookie(cookie))
        assert r.status_code == 200
        [current] = r.json()["sessions"]
        assert current["current"] is True


async def test_cookie_delete_session_needs_our_origin(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        cookie = await _form_sign_in(client, config, "ann@example.com")
        other = await _sign_in(client, config, "ann@example.com")
        path = f"/auth/sessions/{_sid(other['access_token'])}"

        for origin in (None, FOREIGN_ORIGIN, "null", PUBLIC_URL + ".evil.example"):
            r = await client.delete(path, headers=_cookie(cookie, origin))
            assert r.status_code == 403, origin
            assert _error_code(r) == "forbidden"
        assert await _me(client, other["access_token"]) == 200

        r = await client.delete(path, headers=_cookie(cookie, PUBLIC_URL))
        assert r.status_code == 204
        assert await _me(client, other["access_token"]) == 401


async def test_cookie_logout_needs_our_origin(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        cookie = await _form_sign_in(client, config, "ann@example.com")
        for origin in (None, FOREIGN_ORIGIN):
            r = await client.post("/auth/logout", headers=_cookie(cookie, origin))
            assert r.status_code == 403, origin
            assert _error_code(r) == "forbidden"
        assert (await client.get("/auth/me", headers=_cookie(cookie))).status_code == 200

        r = await client.post("/auth/logout", headers=_cookie(cookie, PUBLIC_URL))
        assert r.status_code == 204
        r = await client.get("/auth/me", headers=_cookie(cookie))
        assert r.status_code == 401
        _error_code(r)


async def test_cookie_origin_from_cors_allowed_origins_is_accepted(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml(f'[cors]\nallowed_origins = ["{APP_ORIGIN}"]\n'))
    async with running(config) as (_, client):
        cookie = await _form_sign_in(client, config, "ann@example.com")
        r = await client.post("/auth/logout", headers=_cookie(cookie, FOREIGN_ORIGIN))
        assert r.status_code == 403
        r = await client.post("/auth/logout", headers=_cookie(cookie, APP_ORIGIN))
        assert r.status_code == 204
        assert (await client.get("/auth/me", headers=_cookie(cookie))).status_code == 401


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


async def test_a_tampered_cookie_is_401(make_config: Callable[..., Config]) -> None:
    config = make_config(_toml())
    async with running(config) as (_, client):
        cookie = await _form_sign_in(client, config, "ann@example.com")
        bob = await _sign_in(client, config, "bob@example.com")
        payload, stamp, signature = cookie.split(".")
        bob_payload = URLSafeTimedSerializer("x", salt="s").dumps(_sid(bob["access_token"])).split(".")[0]
        forged = [
            _flip(cookie, len(payload) + len(stamp) + 2 + len(signature) // 2),  # signature bytes
            _flip(cookie, 1),  # payload bytes
            f"{bob_payload}.{stamp}.{signature}",  # someone else's session id, my signature
            URLSafeTimedSerializer("wrong-secret", salt="passwordless.session-cookie").dumps(
                _sid(bob["access_token"])
            ),
            "garbage",
        ]
        for value in forged:
            r = await client.get("/auth/me", headers=_cookie(value))
            assert r.status_code == 401, value
            _error_code(r)
        assert (await client.get("/auth/me", headers=_cookie(cookie))).status_code == 200
