"""The admin API (API.md "Admin API", "Errors", "Audit log"): off without admin.token (404),
401 for a missing or wrong token, every call audited, and each route answering exactly what the
contract says — counts, cursor pages that stay stable while rows are added, user detail, revoking
sessions, deleting a user (with everything that hangs off it, audit rows kept), the audit log and
the email queue (never a body, token or code) and retrying a dead email.

Users sign in through the real endpoints; rows the API cannot make by itself (a dead or leased
email, an expired session) are written with sqlite3 beside the running app."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from passwordless.config.settings import Config
from passwordless.platform.crypto import new_id
from passwordless.users import store as users
from tests.conftest import MakeConfig
from tests.support.app import PEER, AppServer, FakeClock, deps_of
from tests.support.authenticator import SoftAuthenticator
from tests.support.engine import connection
from tests.support.processes import free_port
from tests.support.signin import (
    FILE_MAIL,
    NO_RATE_LIMITS,
    all_mail_sent,
    assert_error,
    bearer,
    claims,
    count,
    emails_to,
    request_sign_in,
    rows,
)
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

ADMIN_TOKEN = "admin-token-0123456789-abcdefghijklmnopqrstuvwxyz"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
ADMIN_SECTION = f'[admin]\ntoken = "{ADMIN_TOKEN}"\n'
BASE = FILE_MAIL + NO_RATE_LIMITS
ORIGIN = "http://localhost:3000"
PASSKEY_FIELDS = {"id", "name", "created_at", "last_used_at", "aaguid", "backed_up", "transports"}
EMAIL_FIELDS = {
    "id", "to", "subject", "status", "attempts", "last_error", "created_at", "next_attempt_at", "sent_at",
}
EVENT_FIELDS = {"id", "created_at", "event_type", "user_id", "email", "ip", "user_agent", "success", "details"}
UNKNOWN = "0190a000-0000-7000-8000-000000000000"

# Every admin route: (method, path to call, route template).
ROUTES = [
    ("GET", "/admin/stats", "/admin/stats"),
    ("GET", "/admin/users", "/admin/users"),
    ("GET", f"/admin/users/{UNKNOWN}", "/admin/users/{id}"),
    ("DELETE", f"/admin/users/{UNKNOWN}/sessions", "/admin/users/{id}/sessions"),
    ("DELETE", f"/admin/users/{UNKNOWN}", "/admin/users/{id}"),
    ("GET", "/admin/audit-logs", "/admin/audit-logs"),
    ("GET", "/admin/emails", "/admin/emails"),
    ("POST", f"/admin/emails/{UNKNOWN}/retry", "/admin/emails/{id}/retry"),
]


# --- the running server -------------------------------------------------------------------------


class Server(AppServer):
    clock: FakeClock

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, path, headers=ADMIN, **kwargs)

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = await self.admin(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    async def register_passkey(self, access_token: str) -> dict[str, Any]:
        headers = bearer(access_token)
        options = await self.http.post("/auth/passkeys/register/options", json={}, headers=headers)
        assert options.status_code == 200, options.text
        credential = SoftAuthenticator().make_credential(options.json()["options"], ORIGIN)
        made = await self.http.post("/auth/passkeys/register/verify", json={"credential": credential}, headers=headers)
        assert made.status_code == 201, made.text
        passkey: dict[str, Any] = made.json()
        return passkey

    async def create_user(self, email: str) -> users.User:
        """A user straight through the store (fast, for counts and pages)."""
        made, _ = await self.deps().db.write(users.create_unless_exists, email, self.clock())
        return made

    def sql(self, statement: str, *params: object) -> int:
        with connection(self.config) as conn:
            return conn.execute(statement, params).rowcount


def assert_refused(response: httpx.Response) -> None:
    """401 in the error shape, with one of the codes API.md lists for a token that no longer works."""
    code = response.json().get("error", {}).get("code") if response.status_code == 401 else None
    assert code in ("unauthorized", "invalid_token"), response.text
    assert_error(response, 401, code)


@pytest.fixture
def config(make_config: MakeConfig) -> Config:
    return make_config(BASE + ADMIN_SECTION)


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    async with Server.serving(config) as s:
        yield s


# --- off, and the token ---------------------------------------------------------------------------


async def test_without_an_admin_token_every_admin_route_is_404(make_config: MakeConfig) -> None:
    config = make_config(BASE)
    assert not config.admin.token
    async with Server.serving(config) as server:
        for method, path, _ in ROUTES:
            for headers in ({}, ADMIN, {"authorization": "Bearer "}):
                response = await server.http.request(method, path, headers=headers)
                assert_error(response, 404, "not_found")
        assert count(config, "audit_logs", "event_type LIKE 'admin%'") == 0


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Bearer {ADMIN_TOKEN[:-1]}",
        f"Bearer {ADMIN_TOKEN}x",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        f"Bearer {ADMIN_TOKEN.upper()}",
    ],
)
async def test_a_missing_or_wrong_token_is_401_and_audited(server: Server, authorization: str | None) -> None:
    headers = {"user-agent": "curl/8.5.0"}
    if authorization is not None:
        headers["authorization"] = authorization
    for method, path, _ in ROUTES:
        response = await server.http.request(method, path, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].lower().startswith("bearer")
    # One row per IP per minute, however many wrong tokens: the first refusal is the one written.
    refused = server.audit("admin_unauthorized")
    assert [(r["details"]["method"], r["details"]["route"]) for r in refused] == [(m, t) for m, _, t in ROUTES[:1]]
    for row in refused:
        assert row["success"] == 0
        assert row["ip"] == PEER[0]
        assert row["user_agent"] == "curl/8.5.0"
        assert ADMIN_TOKEN not in json.dumps(row)
    assert server.audit("admin_request") == []
    # Nothing was done: the unknown user's routes were refused before they ran.
    assert count(server.config, "audit_logs", "event_type NOT LIKE 'admin%'") == 0


async def test_the_right_token_opens_every_route_and_each_call_is_audited(server: Server) -> None:
    answers = {}
    for method, path, _ in ROUTES:
        response = await server.http.request(method, path, headers={**ADMIN, "user-agent": "ops-console/1"})
        answers[(method, path)] = response.status_code
        assert response.status_code != 401, (method, path, response.text)
    # The unknown user and email are not found; the rest answer.
    assert answers == {
        ("GET", "/admin/stats"): 200,
        ("GET", "/admin/users"): 200,
        ("GET", f"/admin/users/{UNKNOWN}"): 404,
        ("DELETE", f"/admin/users/{UNKNOWN}/sessions"): 404,
        ("DELETE", f"/admin/users/{UNKNOWN}"): 404,
        ("GET", "/admin/audit-logs"): 200,
        ("GET", "/admin/emails"): 200,
        ("POST", f"/admin/emails/{UNKNOWN}/retry"): 404,
    }
    calls = server.audit("admin_request")
    assert [(r["details"]["method"], r["details"]["route"]) for r in calls] == [(m, t) for m, _, t in ROUTES]
    for row in calls:
        assert row["success"] == 1
        assert row["ip"] == PEER[0]
        assert row["user_agent"] == "ops-console/1"
        assert ADMIN_TOKEN not in json.dumps(row)
    assert server.audit("admin_unauthorized") == []


# --- stats ----------------------------------------------------------------------------------------


async def test_stats_count_what_was_made(server: Server) -> None:
    empty = await server.ok("GET", "/admin/stats")
    assert empty["users"] == 0 and empty["active_sessions"] == 0 and empty["passkeys"] == 0
    assert empty["email_queue"] == {"pending": 0, "sending": 0, "sent": 0, "dead": 0}

    a1 = await server.sign_in("a@example.com")
    a2 = await server.sign_in("a@example.com", by_code=True)
    b1 = await server.sign_in("b@example.com")
    c1 = await server.sign_in("c@example.com")
    await server.register_passkey(a1["access_token"])
    await server.register_passkey(a1["access_token"])
    await server.register_passkey(b1["access_token"])
    logout = await server.http.post("/auth/logout", headers=bearer(c1["access_token"]))
    assert logout.status_code == 204
    # One of a's sessions has expired (still stored, no longer active).
    expired = server.sql(
        "UPDATE sessions SET expires_at = ? WHERE id = ?", int(server.clock()) - 10, claims(a2["access_token"])["sid"]
    )
    assert expired == 1
    await all_mail_sent(server.config)
    now = int(server.clock())
    for status, lease in (("pending", None), ("sending", now + 600), ("dead", None)):
        server.sql(
            "INSERT INTO email_queue (id, to_address, subject, body_text, body_html, status, attempts,"
            " next_attempt_at, lease_expires_at, created_at) VALUES (?, ?, 's', 't', 'h', ?, 1, ?, ?, ?)",
            new_id(), f"{status}@example.com", status, now + 3600, lease, now,
        )

    stats = await server.ok("GET", "/admin/stats")
    assert set(stats) == {"users", "active_sessions", "passkeys", "email_queue", "uptime_seconds"}
    assert stats["users"] == 3
    assert stats["active_sessions"] == 2  # a1 and b1: c1 logged out, a2 expired
    assert stats["passkeys"] == 3
    assert stats["email_queue"] == {"pending": 1, "sending": 1, "sent": 7, "dead": 1}  # 4 sign-ins, 3 "passkey added"
    assert isinstance(stats["uptime_seconds"], int) and 0 <= stats["uptime_seconds"] < 120


# --- users ----------------------------------------------------------------------------------------


async def test_users_filter_by_email_prefix_and_page_with_a_cursor(server: Server) -> None:
    made = {}
    for email in ("alice@example.com", "alfred@example.com", "albert@example.org", "bob@example.com",
                  "a_b@example.com", "axb@example.com", "a%c@example.com"):
        made[email] = await server.create_user(email)
    signed_in = await server.sign_in("carol@example.com")

    everyone = await server.ok("GET", "/admin/users")
    assert everyone["next"] is None
    listed = everyone["users"]
    assert [u["id"] for u in listed] == sorted(u["id"] for u in listed)  # in id order
    assert {u["email"] for u in listed} == {*made, "carol@example.com"}
    assert listed[-1]["email"] == "carol@example.com"  # made last, in a later millisecond
    for user in listed:
        assert set(user) >= {"id", "email", "created_at"}
        assert isinstance(user["created_at"], int)
    assert listed[-1]["id"] == signed_in["user"]["id"]

    def emails(body: dict[str, Any]) -> list[str]:
        return [u["email"] for u in body["users"]]

    assert emails(await server.ok("GET", "/admin/users?email=al")) == [
        e for e in emails(everyone) if e in ("alice@example.com", "alfred@example.com", "albert@example.org")
    ]
    assert len(emails(await server.ok("GET", "/admin/users?email=al"))) == 3
    assert emails(await server.ok("GET", "/admin/users?email=AL")) == emails(
        await server.ok("GET", "/admin/users?email=al")
    )
    assert emails(await server.ok("GET", "/admin/users?email=alice@")) == ["alice@example.com"]
    assert emails(await server.ok("GET", "/admin/users?email=example.com")) == []  # a prefix, not a substring
    assert emails(await server.ok("GET", "/admin/users?email=a_")) == ["a_b@example.com"]  # _ is no wildcard
    assert emails(await server.ok("GET", "/admin/users", params={"email": "a%"})) == ["a%c@example.com"]
    assert emails(await server.ok("GET", "/admin/users?email=zed")) == []

    # Pages of three: a cursor on every full page, null on the last.
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"after": after} if after else {})}
        page = await server.ok("GET", "/admin/users", params=params)
        pages += 1
        assert len(page["users"]) <= 3
        seen += [u["email"] for u in page["users"]]
        if page["next"] is None:
            break
        assert len(page["users"]) == 3 and page["next"] == page["users"][-1]["id"]
        after = page["next"]
        assert pages < 10
    assert seen == emails(everyone)
    assert pages == 3  # 8 users: 3 + 3 + 2

    # The prefix filter and the cursor together.
    all_al = emails(await server.ok("GET", "/admin/users?email=al"))
    first = await server.ok("GET", "/admin/users?email=al&limit=2")
    assert emails(first) == all_al[:2] and first["next"] == first["users"][-1]["id"]
    rest = await server.ok("GET", "/admin/users", params={"email": "al", "limit": "2", "after": first["next"]})
    assert emails(rest) == all_al[2:] and rest["next"] is None


@pytest.mark.parametrize("limit", ["0", "201", "abc", "-1", "1.5", "1e2", " 5", "²", "999999999999999999999"])
async def test_a_bad_limit_is_400(server: Server, limit: str) -> None:
    for path in ("/admin/users", "/admin/audit-logs", "/admin/emails"):
        assert_error(await server.admin("GET", path, params={"limit": limit}), 400, "invalid_request")
    # Refused requests are audited too.
    calls = server.audit("admin_request")
    assert [c["details"]["route"] for c in calls] == ["/admin/users", "/admin/audit-logs", "/admin/emails"]


async def test_limits_one_and_two_hundred_are_allowed(server: Server) -> None:
    for path in ("/admin/users", "/admin/audit-logs", "/admin/emails"):
        for limit in ("1", "200"):
            await server.ok("GET", path, params={"limit": limit})


async def test_user_pages_stay_stable_while_users_are_being_added(server: Server) -> None:
    originals = [(await server.create_user(f"user{i:02d}@example.com")).id for i in range(30)]
    await asyncio.sleep(0.005)  # ids are ordered by the millisecond: later users sort after these
    made_meanwhile: list[str] = []
    stop = asyncio.Event()

    async def keep_adding() -> None:
        i = 0
        while not stop.is_set():
            made_meanwhile.append((await server.create_user(f"late{i:04d}@example.com")).id)
            i += 1
            await asyncio.sleep(0.002)

    adder = asyncio.create_task(keep_adding())
    seen: list[str] = []
    after: str | None = None
    try:
        for _ in range(200):
            params = {"limit": "7", **({"after": after} if after else {})}
            page = await server.ok("GET", "/admin/users", params=params)
            seen += [u["id"] for u in page["users"]]
            # More users between page requests, as well as the ones made all along.
            for j in range(2):
                made_meanwhile.append((await server.create_user(f"between{len(seen):03d}-{j}@example.com")).id)
            if page["next"] is None or len(seen) >= 60:
                break
            after = page["next"]
    finally:
        stop.set()
        await adder
    assert made_meanwhile
    assert len(seen) == len(set(seen)), "a user was listed twice"
    for user_id in originals:
        assert seen.count(user_id) == 1, f"user {user_id} was not listed exactly once"
    assert seen == sorted(seen), "pages are in id order"
    assert seen[:30] == sorted(originals)


# --- one user -------------------------------------------------------------------------------------


async def test_user_detail_lists_passkeys_and_counts_active_sessions(server: Server) -> None:
    first = await server.sign_in("dana@example.com")
    await server.sign_in("dana@example.com", by_code=True)
    third = await server.sign_in("dana@example.com")
    passkey = await server.register_passkey(first["access_token"])
    await server.http.post("/auth/logout", headers=bearer(third["access_token"]))
    other = await server.sign_in("eve@example.com")
    user_id = first["user"]["id"]

    detail = await server.ok("GET", f"/admin/users/{user_id}")
    assert set(detail) >= {"id", "email", "created_at", "passkeys", "active_sessions"}
    assert detail["id"] == user_id and detail["email"] == "dana@example.com"
    assert detail["created_at"] == int(server.clock())
    assert detail["active_sessions"] == 2
    assert len(detail["passkeys"]) == 1
    assert set(detail["passkeys"][0]) == PASSKEY_FIELDS
    assert detail["passkeys"][0]["id"] == passkey["id"]
    assert detail["passkeys"][0] == passkey

    eve = await server.ok("GET", f"/admin/users/{other['user']['id']}")
    assert eve["passkeys"] == [] and eve["active_sessions"] == 1

    assert_error(await server.admin("GET", f"/admin/users/{UNKNOWN}"), 404, "not_found")
    assert_error(await server.admin("GET", "/admin/users/not-an-id"), 404, "not_found")


async def test_revoking_a_users_sessions_ends_them_all(server: Server) -> None:
    tokens = [await server.sign_in("fay@example.com"), await server.sign_in("fay@example.com", by_code=True)]
    bystander = await server.sign_in("gus@example.com")
    user_id = tokens[0]["user"]["id"]
    for t in tokens:
        assert (await server.http.get("/auth/me", headers=bearer(t["access_token"]))).status_code == 200

    revoked = await server.admin("DELETE", f"/admin/users/{user_id}/sessions")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"revoked": 2}

    for t in tokens:
        assert_refused(await server.http.get("/auth/me", headers=bearer(t["access_token"])))
        refreshed = await server.http.post("/auth/refresh", json={"refresh_token": t["refresh_token"]})
        assert refreshed.status_code == 401, refreshed.text
    assert (await server.http.get("/auth/me", headers=bearer(bystander["access_token"]))).status_code == 200
    assert (await server.ok("GET", f"/admin/users/{user_id}"))["active_sessions"] == 0

    audited = [r for r in server.audit("sessions_revoked") if r["user_id"] == user_id]
    assert len(audited) == 1 and audited[0]["details"]["revoked"] == 2 and audited[0]["success"] == 1

    # Nothing left to revoke; an unknown user is 404.
    assert await server.ok("DELETE", f"/admin/users/{user_id}/sessions") == {"revoked": 0}
    assert_error(await server.admin("DELETE", f"/admin/users/{UNKNOWN}/sessions"), 404, "not_found")


async def test_deleting_a_user_takes_sessions_passkeys_and_tickets_and_keeps_the_audit_rows(server: Server) -> None:
    config = server.config
    first = await server.sign_in("hal@example.com")
    second = await server.sign_in("hal@example.com", by_code=True)
    await server.register_passkey(first["access_token"])
    refreshed = await server.http.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert refreshed.status_code == 200
    # A live ticket not used yet, and a registration challenge not answered.
    await request_sign_in(server.http, config, "hal@example.com")
    pending = await server.http.post(
        "/auth/passkeys/register/options", json={}, headers=bearer(first["access_token"])
    )
    assert pending.status_code == 200
    bystander = await server.sign_in("ivy@example.com")
    await server.register_passkey(bystander["access_token"])
    user_id = first["user"]["id"]
    session_ids = [r["id"] for r in rows(config, "SELECT id FROM sessions WHERE user_id = ?", user_id)]
    assert len(session_ids) == 2
    assert count(config, "passkeys", "user_id = ?", user_id) == 1
    assert count(config, "sign_in_tickets", "email = ?", "hal@example.com") == 3
    assert count(config, "rotated_refresh_tokens", "session_id = ?", session_ids[1]) + count(
        config, "rotated_refresh_tokens", "session_id = ?", session_ids[0]
    ) == 1
    assert count(config, "webauthn_challenges", "user_id = ?", user_id) == 1
    audit_before = rows(config, "SELECT * FROM audit_logs WHERE user_id = ? ORDER BY id", user_id)
    assert {r["event_type"] for r in audit_before} >= {"user_created", "magic_link_verified", "passkey_registered"}

    response = await server.admin("DELETE", f"/admin/users/{user_id}")
    assert response.status_code == 204, response.text
    assert response.content == b""

    assert count(config, "users", "id = ?", user_id) == 0
    assert count(config, "sessions", "user_id = ?", user_id) == 0
    assert count(config, "passkeys", "user_id = ?", user_id) == 0
    assert count(config, "sign_in_tickets", "email = ?", "hal@example.com") == 0
    assert count(config, "webauthn_challenges", "user_id = ?", user_id) == 0
    for session_id in session_ids:
        assert count(config, "rotated_refresh_tokens", "session_id = ?", session_id) == 0
    # The audit rows about the user stay, and the deletion is one more.
    audit_after = rows(config, "SELECT * FROM audit_logs WHERE user_id = ? ORDER BY id", user_id)
    assert audit_after[: len(audit_before)] == audit_before
    deleted = [r for r in server.audit("user_deleted") if r["user_id"] == user_id]
    assert len(deleted) == 1
    assert deleted[0]["email"] == "hal@example.com" and deleted[0]["success"] == 1 and deleted[0]["ip"] == PEER[0]

    # Their tokens are dead, their user is gone from the admin API.
    for token in (first["access_token"], refreshed.json()["access_token"]):
        assert_refused(await server.http.get("/auth/me", headers=bearer(token)))
    assert (await server.http.post("/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]})).status_code == 401
    assert_error(await server.admin("GET", f"/admin/users/{user_id}"), 404, "not_found")
    assert_error(await server.admin("DELETE", f"/admin/users/{user_id}"), 404, "not_found")
    assert user_id not in [u["id"] for u in (await server.ok("GET", "/admin/users"))["users"]]

    # The other user is untouched.
    assert (await server.http.get("/auth/me", headers=bearer(bystander["access_token"]))).status_code == 200
    assert count(config, "passkeys", "user_id = ?", bystander["user"]["id"]) == 1

    # The same address can sign up again, as a new user.
    again = await server.sign_in("hal@example.com")
    assert again["user"]["id"] != user_id


# --- the audit log --------------------------------------------------------------------------------


async def test_audit_log_filters_and_order(server: Server) -> None:
    config, clock = server.config, server.clock
    start = int(clock())
    alice = await server.sign_in("alice@example.com")
    clock.advance(100)
    bad = await server.http.post("/auth/magic-link/verify", json={"token": "x" * 43})
    assert bad.status_code == 401
    clock.advance(100)
    middle = int(clock())
    bob = await server.sign_in("bob@example.com")
    clock.advance(100)
    await server.sign_in("alice@example.com", by_code=True)
    await all_mail_sent(server.config)
    await asyncio.sleep(0.005)  # the admin calls below come in a later millisecond

    async def events(**params: str) -> list[dict[str, Any]]:
        body = await server.ok("GET", "/admin/audit-logs", params={"limit": "200", **params})
        assert set(body) == {"events", "next"} and body["next"] is None
        for event in body["events"]:
            assert set(event) == EVENT_FIELDS
            assert isinstance(event["success"], bool) and isinstance(event["details"], dict)
        found: list[dict[str, Any]] = body["events"]
        return found

    def stored(where: str = "1 = 1", *params: object) -> list[str]:
        return [r["id"] for r in rows(config, f"SELECT id FROM audit_logs WHERE {where} ORDER BY id DESC", *params)]

    everything = await events()
    assert [e["id"] for e in everything] == stored()
    assert [e["created_at"] for e in everything] == sorted((e["created_at"] for e in everything), reverse=True)
    assert everything[0]["event_type"] == "admin_request"  # this very call, newest first

    created = await events(event_type="user_created")
    assert [(e["user_id"], e["email"]) for e in created] == [
        (bob["user"]["id"], "bob@example.com"), (alice["user"]["id"], "alice@example.com"),
    ]
    assert all(e["success"] is True and e["ip"] == PEER[0] for e in created)

    mine = await events(user_id=alice["user"]["id"])
    assert [e["id"] for e in mine] == stored("user_id = ?", alice["user"]["id"])
    assert {e["event_type"] for e in mine} >= {"user_created", "magic_link_verified", "code_verified"}

    failed = await events(success="false")
    assert [e["id"] for e in failed] == stored("success = 0")
    assert [e["event_type"] for e in failed] == ["magic_link_failed"]
    assert [e["id"] for e in await events(success="0")] == [e["id"] for e in failed]
    succeeded = await events(success="true")
    assert [e["id"] for e in succeeded] == stored("success = 1")
    assert [e["id"] for e in await events(success="1")] == stored("success = 1")

    recent = await events(since=str(middle))
    assert [e["id"] for e in recent] == stored("created_at >= ?", middle)
    assert all(e["created_at"] >= middle for e in recent)
    assert "magic_link_failed" not in {e["event_type"] for e in recent}
    assert len(await events(since=str(start))) > len(recent)

    both = await events(event_type="magic_link_verified", user_id=alice["user"]["id"])
    assert len(both) == 1 and both[0]["created_at"] == start
    assert await events(event_type="no_such_event") == []


@pytest.mark.parametrize(
    "params",
    [{"success": "maybe"}, {"success": "yes"}, {"since": "yesterday"}, {"since": "-5"}, {"since": "1.5"},
     {"since": "²"}],
    ids=lambda params: "&".join(f"{k}={v}" for k, v in params.items()),
)
async def test_bad_audit_log_filters_are_400(server: Server, params: dict[str, str]) -> None:
    assert_error(await server.admin("GET", "/admin/audit-logs", params=params), 400, "invalid_request")


async def test_a_since_beyond_any_time_is_no_server_error(server: Server) -> None:
    response = await server.admin("GET", "/admin/audit-logs", params={"since": "9" * 30})
    if response.status_code == 200:
        assert response.json() == {"events": [], "next": None}
    else:
        assert_error(response, 400, "invalid_request")


async def test_audit_log_cursor_is_stable_while_rows_are_added(server: Server) -> None:
    for i in range(6):
        await server.sign_in(f"user{i}@example.com")
    await all_mail_sent(server.config)
    before = [r["id"] for r in rows(server.config, "SELECT id FROM audit_logs ORDER BY id DESC")]
    assert len(before) >= 24

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"limit": "5", **({"after": after} if after else {})}
        page = await server.ok("GET", "/admin/audit-logs", params=params)
        pages += 1
        seen += [e["id"] for e in page["events"]]
        # New rows arrive between pages (each admin call adds one too).
        await server.http.post("/auth/magic-link", json={"email": f"late{pages}@example.com"})
        server.clock.advance(1)
        if page["next"] is None:
            break
        assert page["next"] == page["events"][-1]["id"]
        after = page["next"]
        assert pages < 100
    assert len(seen) == len(set(seen)), "an audit row was listed twice"
    assert seen == sorted(seen, reverse=True), "newest first, all along"
    for row_id in before:
        assert seen.count(row_id) == 1, f"audit row {row_id} was not listed exactly once"


# --- the email queue ------------------------------------------------------------------------------


async def test_emails_page_shows_no_body_token_or_code(server: Server) -> None:
    config = server.config
    token, code = await request_sign_in(server.http, config, "jo@example.com")
    await all_mail_sent(server.config)
    await asyncio.sleep(0.005)
    now = int(server.clock())
    pending_id = new_id()
    server.sql(
        "INSERT INTO email_queue (id, to_address, subject, body_text, body_html, status, next_attempt_at, created_at)"
        " VALUES (?, 'kim@example.com', 'Sign in', 'BODY-TEXT-SECRET code: 246810', '<p>BODY-HTML-SECRET</p>',"
        " 'pending', ?, ?)",
        pending_id, now + 3600, now,
    )

    response = await server.admin("GET", "/admin/emails")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"emails", "next"} and body["next"] is None
    assert [e["id"] for e in body["emails"]] == [pending_id, emails_to(config, "jo@example.com")[0]["id"]]
    for email in body["emails"]:
        assert set(email) == EMAIL_FIELDS
    sent, pending = body["emails"][1], body["emails"][0]
    assert sent["to"] == "jo@example.com" and sent["status"] == "sent" and sent["attempts"] == 1
    assert isinstance(sent["sent_at"], int) and sent["last_error"] is None
    assert isinstance(sent["created_at"], int) and isinstance(sent["next_attempt_at"], int)
    assert pending["status"] == "pending" and pending["sent_at"] is None and pending["attempts"] == 0
    for text in (response.text, (await server.admin("GET", "/admin/emails?status=pending")).text):
        assert token not in text
        assert not re.search(rf"(?<!\d){code}(?!\d)", text)
        assert "246810" not in text and "SECRET" not in text and "body" not in text.lower()

    only_sent = await server.ok("GET", "/admin/emails?status=sent")
    assert [e["to"] for e in only_sent["emails"]] == ["jo@example.com"]
    assert [e["id"] for e in (await server.ok("GET", "/admin/emails?status=pending"))["emails"]] == [pending_id]
    assert (await server.ok("GET", "/admin/emails?status=dead"))["emails"] == []

    first = await server.ok("GET", "/admin/emails?limit=1")
    assert [e["id"] for e in first["emails"]] == [pending_id] and first["next"] == pending_id
    rest = await server.ok("GET", "/admin/emails", params={"limit": "1", "after": first["next"]})
    assert [e["to"] for e in rest["emails"]] == ["jo@example.com"]

    assert_error(await server.admin("GET", "/admin/emails?status=bogus"), 400, "invalid_request")


async def test_a_dead_email_can_be_retried_and_goes_back_to_pending(make_config: MakeConfig) -> None:
    """A real dead email: the SMTP server is unreachable, two attempts, then dead."""
    config = make_config(
        NO_RATE_LIMITS + ADMIN_SECTION
        + '[email]\ntransport = "smtp"\nmax_attempts = 2\nretry_initial = "1h"\nretry_max = "1h"\n'
        + f'[email.smtp]\nhost = "127.0.0.1"\nport = {free_port()}\nsecurity = "none"\ntimeout = "2s"\n'
    )
    clock = FakeClock()
    async with Server.serving(config, clock) as server:
        accepted = await server.http.post("/auth/magic-link", json={"email": "lou@example.com"})
        assert accepted.status_code == 202
        email_id = emails_to(config, "lou@example.com")[0]["id"]

        async def settled(status: str, attempts: int) -> dict[str, Any]:
            def row() -> dict[str, Any] | None:
                found = emails_to(config, "lou@example.com")[0]
                return found if (found["status"], found["attempts"]) == (status, attempts) else None

            settled_row = await until(row, f"the email {status} after {attempts} attempts")
            assert settled_row is not None
            return settled_row

        await settled("pending", 1)
        clock.advance(2 * 3600)
        deps_of(server.app).magic_link.wake_mail()
        dead = await settled("dead", 2)
        assert dead["last_error"]

        listed = await server.ok("GET", "/admin/emails?status=dead")
        assert [e["id"] for e in listed["emails"]] == [email_id]
        assert listed["emails"][0]["last_error"] and listed["emails"][0]["attempts"] == 2

        response = await server.admin("POST", f"/admin/emails/{email_id}/retry")
        assert response.status_code == 202, response.text
        # Back to pending with a fresh count: the worker tries it at once (the server is still
        # unreachable), and it waits for its next attempt again instead of being dead.
        again = await settled("pending", 1)
        assert again["body_text"]
        assert (await server.ok("GET", "/admin/emails?status=dead"))["emails"] == []
        assert [e["id"] for e in (await server.ok("GET", "/admin/emails?status=pending"))["emails"]] == [email_id]

        # Only a dead email can be retried.
        assert_error(await server.admin("POST", f"/admin/emails/{email_id}/retry"), 400, "invalid_request")
        assert_error(await server.admin("POST", f"/admin/emails/{UNKNOWN}/retry"), 404, "not_found")


async def test_retrying_a_sent_or_unknown_email_is_refused(server: Server) -> None:
    await request_sign_in(server.http, server.config, "max@example.com")
    await all_mail_sent(server.config)
    email_id = emails_to(server.config, "max@example.com")[0]["id"]
    assert_error(await server.admin("POST", f"/admin/emails/{email_id}/retry"), 400, "invalid_request")
    assert emails_to(server.config, "max@example.com")[0]["status"] == "sent"
    assert_error(await server.admin("POST", f"/admin/emails/{UNKNOWN}/retry"), 404, "not_found")
    assert_error(await server.admin("POST", "/admin/emails/nope/retry"), 404, "not_found")


async def test_a_flood_of_wrong_tokens_writes_one_row_per_ip_per_minute(server: Server) -> None:
    wrong = {"authorization": "Bearer wrong"}
    for _ in range(1000):
        assert (await server.http.get("/admin/stats", headers=wrong)).status_code == 401
    assert len(server.audit("admin_unauthorized")) == 1
    server.clock.advance(59)
    assert (await server.http.get("/admin/stats", headers=wrong)).status_code == 401
    assert len(server.audit("admin_unauthorized")) == 1
    server.clock.advance(1)  # the next minute gets its own row
    assert (await server.http.get("/admin/stats", headers=wrong)).status_code == 401
    assert len(server.audit("admin_unauthorized")) == 2
    # Every refusal is still counted where an operator watches: http_requests_total by status.
    metrics = (await server.http.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/admin/stats",status="401"} 1002.0' in metrics


@pytest.mark.parametrize(
    "path",
    ["/admin/audit-logs?user_id=%00&since=178", "/admin/emails?status=sent&after=%5E%00x&limit=85",
     "/admin/users?email=a%00b", "/admin/users/%00"],
)
async def test_nul_in_an_address_is_a_clear_400_on_either_engine(server: Server, path: str) -> None:
    """Found by the fuzzer on PostgreSQL, which cannot hold NUL in text: refused before any lookup."""
    response = await server.admin("GET", path)
    assert_error(response, 400, "invalid_request")
