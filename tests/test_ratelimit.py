"""Rate limits (CONFIG.md rate_limit.*, server.trusted_proxies; API.md "Errors", "Sign in by
email", "Audit log"): the GCRA limiter and its client keys, the per-email limit counted from
stored tickets (it survives a restart), the per-IP limits of requesting and verifying, and
X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from passwordless.config.kinds import Rate
from passwordless.config.settings import Config
from passwordless.platform.ratelimit import MAX_KEYS, SWEEP_STEP, RateLimiter, client_key
from passwordless.users import store as users
from tests.conftest import MakeConfig
from tests.support.app import PEER, FakeClock, deps_of, running
from tests.support.engine import connection

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0  # a whole second, so expected Retry-After values are exact
TRUSTED = '[server]\ntrusted_proxies = ["203.0.113.0/24"]\n'
NO_EMAIL_LIMIT = 'magic_link_per_email = "1000/15m"\n'


# --- helpers ---------------------------------------------------------------------------------


async def post_from(
    app: Starlette, ip: str, path: str, body: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    """One POST as a client connecting from `ip` (the ASGI peer address)."""
    config: Config = deps_of(app).config
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=config.server.public_url) as client:
        return await client.post(path, json=body, headers=headers or {})


async def ask_link(app: Starlette, ip: str, email: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await post_from(app, ip, "/auth/magic-link", {"email": email}, headers)


def retry_after(response: httpx.Response) -> int:
    """Checks the 429 shape every client relies on and returns the Retry-After seconds."""
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert isinstance(response.json()["error"]["message"], str)
    header = response.headers.get("retry-after")
    assert header is not None and re.fullmatch(r"[0-9]+", header), response.headers
    seconds = int(header)
    assert seconds > 0
    return seconds


def query(config: Config, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with connection(config) as conn:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]


def rate_limited_audit(config: Config) -> list[tuple[Any, ...]]:
    return query(
        config,
        "SELECT success, email, ip, details FROM audit_logs WHERE event_type = 'rate_limited' ORDER BY id",
    )


class Mailbox:
    """What the console transport printed (captured stdout), read email by email."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.text = ""
        self.taken = 0

    async def next_for(self, to: str, timeout: float = 10) -> tuple[str, str]:
        """(token, code) of the next printed email to `to`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.text += self.capsys.readouterr().out
            blocks = re.findall(r"^-{72}\n(From: .*?)\n-{72}$", self.text, re.S | re.M)
            mine = [b for b in blocks if re.search(rf"^To: {re.escape(to)}$", b, re.M)]
            if len(mine) > self.taken:
                block = mine[self.taken]
                self.taken += 1
                token = re.search(r"token=([A-Za-z0-9_-]+)", block)
                code = re.search(r"code: ([0-9]{6})\b", block)
                assert token and code, block
                return token.group(1), code.group(1)
            await asyncio.sleep(0.01)
        raise AssertionError(f"no email to {to} was printed:\n{self.text}")


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- the limiter and its keys ------------------------------------------------------------------


def test_limiter_allows_count_events_then_a_positive_wait_and_recovers_after_the_period() -> None:
    limiter, rate = RateLimiter(), Rate(5, 60.0)
    now = 1000.0
    assert [limiter.hit("k", rate, now) for _ in range(5)] == [None] * 5
    wait = limiter.hit("k", rate, now)
    assert wait is not None and 0 < wait <= 60
    # refused hits are not counted: asking again does not push the wait further out
    again = limiter.hit("k", rate, now + 1)
    assert again is not None and again == pytest.approx(wait - 1)
    # waiting the announced time is enough for one more
    assert limiter.hit("k", rate, now + wait) is None
    assert limiter.hit("k", rate, now + wait) is not None
    # a full period after the burst, the whole burst is available again
    later = now + wait + 60
    assert [limiter.hit("k", rate, later) for _ in range(5)] == [None] * 5
    assert limiter.hit("k", rate, later) is not None


def test_limiter_keys_are_independent() -> None:
    limiter, rate = RateLimiter(), Rate(2, 60.0)
    assert limiter.hit("a", rate, 0.0) is None
    assert limiter.hit("a", rate, 0.0) is None
    assert limiter.hit("a", rate, 0.0) is not None
    assert limiter.hit("b", rate, 0.0) is None
    assert limiter.hit("b", rate, 0.0) is None
    assert limiter.hit("b", rate, 0.0) is not None



def test_with_100000_live_keys_a_new_key_looks_at_a_bounded_number_of_entries() -> None:
    limiter, rate = RateLimiter(), Rate(5, 900.0)
    for i in range(MAX_KEYS):
        assert limiter.hit(f"k{i}", rate, 0.0) is None
    assert limiter.swept == 0
    for i in range(100):
        assert limiter.hit(f"new{i}", rate, 1.0) is None
    # The old code scanned all 100,000 keys for each new one; now each costs at most SWEEP_STEP.
    assert limiter.swept <= 100 * SWEEP_STEP
    # Live keys are never forgotten (that would lift their limit): k0 is still limited.
    for _ in range(4):
        limiter.hit("k0", rate, 1.0)
    assert limiter.hit("k0", rate, 1.0) is not None


def test_expired_keys_are_forgotten_step_by_step() -> None:
    limiter, rate = RateLimiter(), Rate(1, 60.0)
    for i in range(MAX_KEYS):
        limiter.hit(f"old{i}", rate, 0.0)
    later = 1000.0  # every old key's window has passed
    for i in range(MAX_KEYS // SWEEP_STEP + 10):
        limiter.hit(f"new{i}", rate, later)
    # Each new key past the bound forgets up to SWEEP_STEP expired ones: the table stays near the bound.
    assert len(limiter._next_free) <= MAX_KEYS + 1


def test_first_in_window_is_true_once_per_window() -> None:
    limiter = RateLimiter()
    assert [limiter.first_in_window("k", 60.0, 0.0) for _ in range(1000)] == [True] + [False] * 999
    assert limiter.first_in_window("k", 60.0, 59.9) is False
    assert limiter.first_in_window("k", 60.0, 60.0) is True
    assert limiter.first_in_window("other", 60.0, 60.0) is True

def test_client_key_groups_ipv6_by_64_and_keeps_ipv4_alone() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff")
    assert client_key("2001:db8::1") == client_key("2001:db8:0:0:ffff:ffff:ffff:ffff")
    assert client_key("2001:db8::1") != client_key("2001:db8:0:1::1")
    assert client_key("192.0.2.1") != client_key("192.0.2.2")
    assert client_key("192.0.2.1") == client_key("192.0.2.1")
    # a dual-stack socket reports IPv4 clients as IPv4-mapped IPv6 addresses
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1")
    assert client_key("::ffff:192.0.2.1") != client_key("::ffff:192.0.2.2")


# --- per email ------------------------------------------------------------------------------------


async def test_sixth_request_for_an_address_is_429_until_the_oldest_leaves_the_window_even_across_a_restart(
    make_config: MakeConfig,
) -> None:
    config = make_config()
    clock = FakeClock(T0)
    async with running(config, clock) as (app, client):
        for _ in range(5):  # one a minute
            response = await client.post("/auth/magic-link", json={"email": "a@example.com"})
            assert (response.status_code, response.json()) == (202, {"status": "sent"})
            clock.advance(60)
        limited = await client.post("/auth/magic-link", json={"email": "a@example.com"})
        # the oldest of the five (at T0) leaves the 15-minute window at T0 + 900; now is T0 + 300
        assert abs(retry_after(limited) - 600) <= 1
        # the same address spelt differently is the same address
        assert (await client.post("/auth/magic-link", json={"email": " A@Example.COM "})).status_code == 429
        # another address is unaffected
        assert (await client.post("/auth/magic-link", json={"email": "b@example.com"})).status_code == 202

    async with running(config, clock) as (app, client):  # a new process, same database file
        limited = await client.post("/auth/magic-link", json={"email": "a@example.com"})
        wait = retry_after(limited)
        assert abs(wait - 600) <= 1
        clock.advance(wait)  # Retry-After is honest: waiting that long is enough
        assert (await client.post("/auth/magic-link", json={"email": "a@example.com"})).status_code == 202
        # ...for one request: the next oldest (T0 + 60) leaves the window a minute later
        assert abs(retry_after(await client.post("/auth/magic-link", json={"email": "a@example.com"})) - 60) <= 1


async def test_after_fifteen_minutes_the_address_can_ask_again(make_config: MakeConfig) -> None:
    config = make_config()
    clock = FakeClock()  # a real-looking clock, fractions of a second and all
    async with running(config, clock) as (app, client):
        for _ in range(5):
            assert (await client.post("/auth/magic-link", json={"email": "a@example.com"})).status_code == 202
        wait = retry_after(await client.post("/auth/magic-link", json={"email": "a@example.com"}))
        assert wait <= 900
        clock.advance(14 * 60)
        assert (await client.post("/auth/magic-link", json={"email": "a@example.com"})).status_code == 429
        clock.advance(60)
        for _ in range(5):
            assert (await client.post("/auth/magic-link", json={"email": "a@example.com"})).status_code == 202
        assert (await client.post("/auth/magic-link", json={"email": "a@example.com"})).status_code == 429


async def test_a_refused_request_is_audited_and_sends_no_email(
    make_config: MakeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config()
    mailbox = Mailbox(capsys)
    async with running(config, FakeClock(T0)) as (app, client):
        for _ in range(5):
            assert (await client.post("/auth/magic-link", json={"email": "a@example.com"})).status_code == 202
            await mailbox.next_for("a@example.com")
        retry_after(await client.post("/auth/magic-link", json={"email": "a@example.com"}))
        audit = [(s, e, ip, json.loads(d)) for s, e, ip, d in rate_limited_audit(config)]
        assert audit == [(0, "a@example.com", PEER[0], {"scope": "magic_link_per_email"})]
        assert query(config, "SELECT count(*) FROM email_queue WHERE to_address = 'a@example.com'") == [(5,)]
        assert query(config, "SELECT count(*) FROM sign_in_tickets WHERE email = 'a@example.com'") == [(5,)]
        requested = query(config, "SELECT count(*) FROM audit_logs WHERE event_type = 'magic_link_requested'")
        assert requested == [(5,)]
        # and nothing more is printed: the worker wakes at once, so give it a moment
        await asyncio.sleep(0.2)
        with pytest.raises(AssertionError, match="no email"):
            await mailbox.next_for("a@example.com", timeout=0.3)


@pytest.mark.parametrize("allow_signup", [True, False])
async def test_known_and_unknown_addresses_meet_the_same_limit(make_config: MakeConfig, allow_signup: bool) -> None:
    config = make_config(f"[auth]\nallow_signup = {str(allow_signup).lower()}\n")
    clock = FakeClock(T0)
    async with running(config, clock) as (app, client):
        await deps_of(app).db.write(users.create_unless_exists, "known@example.com", clock())
        answers: dict[str, list[tuple[int, object, str | None]]] = {}
        for email in ("known@example.com", "unknown@example.com"):
            answers[email] = []
            for _ in range(7):
                response = await client.post("/auth/magic-link", json={"email": email})
                answers[email].append((response.status_code, response.json(), response.headers.get("retry-after")))
        assert [status for status, _, _ in answers["known@example.com"]] == [202] * 5 + [429] * 2
        assert answers["known@example.com"] == answers["unknown@example.com"]


async def test_concurrent_requests_for_one_address_cannot_get_past_the_limit(make_config: MakeConfig) -> None:
    config = make_config()
    async with running(config, FakeClock(T0)) as (app, client):
        responses = await asyncio.gather(
            *(client.post("/auth/magic-link", json={"email": "a@example.com"}) for _ in range(12))
        )
        assert sorted(r.status_code for r in responses) == [202] * 5 + [429] * 7
        assert all(r.headers.get("retry-after") for r in responses if r.status_code == 429)
        assert query(config, "SELECT count(*) FROM email_queue") == [(5,)]


# --- per IP ---------------------------------------------------------------------------------------


async def test_fourth_request_from_one_ip_is_429_and_another_ip_is_served(make_config: MakeConfig) -> None:
    config = make_config(f'[rate_limit]\nmagic_link_per_ip = "3/1m"\n{NO_EMAIL_LIMIT}')
    clock = FakeClock(T0)
    async with running(config, clock) as (app, _):
        for i in range(3):
            assert (await ask_link(app, "198.51.100.1", f"u{i}@example.com")).status_code == 202
        limited = await ask_link(app, "198.51.100.1", "u3@example.com")
        wait = retry_after(limited)
        assert wait <= 60
        assert (await ask_link(app, "198.51.100.2", "u4@example.com")).status_code == 202
        # the refused request stored and sent nothing, and was audited against the client's IP
        assert query(config, "SELECT count(*) FROM sign_in_tickets WHERE email = 'u3@example.com'") == [(0,)]
        assert query(config, "SELECT count(*) FROM email_queue WHERE to_address = 'u3@example.com'") == [(0,)]
        assert [(s, ip) for s, _, ip, _ in rate_limited_audit(config)] == [(0, "198.51.100.1")]
        clock.advance(wait)  # Retry-After is honest
        assert (await ask_link(app, "198.51.100.1", "u3@example.com")).status_code == 202


async def test_ipv6_clients_in_one_64_share_the_limit(make_config: MakeConfig) -> None:
    config = make_config(f'[rate_limit]\nmagic_link_per_ip = "3/1m"\n{NO_EMAIL_LIMIT}')
    async with running(config, FakeClock(T0)) as (app, _):
        assert (await ask_link(app, "2001:db8:1:2::1", "u0@example.com")).status_code == 202
        assert (await ask_link(app, "2001:db8:1:2::2", "u1@example.com")).status_code == 202
        assert (await ask_link(app, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "u2@example.com")).status_code == 202
        retry_after(await ask_link(app, "2001:db8:1:2::1", "u3@example.com"))
        retry_after(await ask_link(app, "2001:db8:1:2:ffff::9", "u4@example.com"))
        assert (await ask_link(app, "2001:db8:1:3::1", "u5@example.com")).status_code == 202


@pytest.mark.parametrize("server_section", ["", TRUSTED], ids=["no-proxies", "peer-not-a-proxy"])
async def test_an_untrusted_peer_cannot_dodge_the_limit_with_x_forwarded_for(
    make_config: MakeConfig, server_section: str
) -> None:
    config = make_config(f'{server_section}[rate_limit]\nmagic_link_per_ip = "3/1m"\n{NO_EMAIL_LIMIT}')
    async with running(config, FakeClock(T0)) as (app, _):
        statuses = [
            (await ask_link(app, "198.51.100.7", f"u{i}@example.com", {"X-Forwarded-For": f"192.0.2.{i}"})).status_code
            for i in range(5)
        ]
        assert statuses == [202, 202, 202, 429, 429]
        assert {ip for _, _, ip, _ in rate_limited_audit(config)} == {"198.51.100.7"}


async def test_x_forwarded_for_from_a_trusted_proxy_limits_each_client_separately(make_config: MakeConfig) -> None:
    config = make_config(f'{TRUSTED}[rate_limit]\nmagic_link_per_ip = "3/1m"\n{NO_EMAIL_LIMIT}')
    async with running(config, FakeClock(T0)) as (app, _):
        proxy, other_proxy = "203.0.113.5", "203.0.113.6"
        for i in range(3):
            response = await ask_link(app, proxy, f"a{i}@example.com", {"X-Forwarded-For": "192.0.2.1"})
            assert response.status_code == 202
        retry_after(await ask_link(app, proxy, "a3@example.com", {"X-Forwarded-For": "192.0.2.1"}))
        # another client behind the same proxy has its own allowance
        for i in range(3):
            response = await ask_link(app, proxy, f"b{i}@example.com", {"X-Forwarded-For": "192.0.2.2"})
            assert response.status_code == 202
        # the limited client stays limited through another trusted proxy...
        retry_after(await ask_link(app, other_proxy, "a4@example.com", {"X-Forwarded-For": "192.0.2.1"}))
        # ...and when it sends its own X-Forwarded-For, which the proxy appends to
        spoofed = {"X-Forwarded-For": "198.51.100.99, 192.0.2.1"}
        retry_after(await ask_link(app, proxy, "a5@example.com", spoofed))
        # the proxy's own traffic (no header) is not the client's
        assert (await ask_link(app, proxy, "c0@example.com")).status_code == 202
        assert {ip for _, _, ip, _ in rate_limited_audit(config)} == {"192.0.2.1"}


# --- verification per IP -----------------------------------------------------------------------

VERIFY_3 = '[rate_limit]\nverify_per_ip = "3/1m"\n'


async def test_fourth_wrong_code_from_one_ip_is_429_not_401(
    make_config: MakeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(VERIFY_3)
    mailbox = Mailbox(capsys)
    async with running(config, FakeClock(T0)) as (app, _):
        assert (await ask_link(app, "198.51.100.1", "a@example.com")).status_code == 202
        _, code = await mailbox.next_for("a@example.com")
        attacker, owner = "198.51.100.10", "198.51.100.11"
        for _ in range(3):
            response = await post_from(app, attacker, "/auth/code/verify", {"email": "a@example.com", "code": wrong(code)})
            assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_code")
        limited = await post_from(app, attacker, "/auth/code/verify", {"email": "a@example.com", "code": wrong(code)})
        assert retry_after(limited) <= 60
        # once limited, even the right code is refused the same way: the 429 reveals nothing
        right = await post_from(app, attacker, "/auth/code/verify", {"email": "a@example.com", "code": code})
        retry_after(right)
        # the ticket was not spent by the refused attempts: the owner signs in from elsewhere
        response = await post_from(app, owner, "/auth/code/verify", {"email": "a@example.com", "code": code})
        assert response.status_code == 200, response.text
        assert response.json()["user"]["email"] == "a@example.com"
        audit = rate_limited_audit(config)
        assert [(s, ip, json.loads(d)) for s, _, ip, d in audit][0] == (0, attacker, {"scope": "verify_per_ip"})


async def test_fourth_wrong_link_token_from_one_ip_is_429_not_401(
    make_config: MakeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(VERIFY_3)
    mailbox = Mailbox(capsys)
    async with running(config, FakeClock(T0)) as (app, _):
        assert (await ask_link(app, "198.51.100.1", "a@example.com")).status_code == 202
        token, _ = await mailbox.next_for("a@example.com")
        attacker, owner = "198.51.100.20", "198.51.100.21"
        for i in range(3):
            response = await post_from(app, attacker, "/auth/magic-link/verify", {"token": f"guess-{i}"})
            assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_token")
        assert retry_after(await post_from(app, attacker, "/auth/magic-link/verify", {"token": "guess-3"})) <= 60
        retry_after(await post_from(app, attacker, "/auth/magic-link/verify", {"token": token}))
        response = await post_from(app, owner, "/auth/magic-link/verify", {"token": token})
        assert response.status_code == 200, response.text
        assert response.json()["user"]["email"] == "a@example.com"


async def test_link_and_code_guesses_share_one_verify_limit(make_config: MakeConfig) -> None:
    config = make_config(VERIFY_3)
    async with running(config, FakeClock(T0)) as (app, _):
        ip = "198.51.100.30"
        for path, body in [
            ("/auth/code/verify", {"email": "a@example.com", "code": "123456"}),
            ("/auth/magic-link/verify", {"token": "guess-1"}),
            ("/auth/code/verify", {"email": "b@example.com", "code": "654321"}),
        ]:
            assert (await post_from(app, ip, path, body)).status_code == 401
        retry_after(await post_from(app, ip, "/auth/magic-link/verify", {"token": "guess-2"}))
        retry_after(await post_from(app, ip, "/auth/code/verify", {"email": "c@example.com", "code": "111111"}))
        # verifying does not use up the allowance for asking for links
        assert (await ask_link(app, ip, "a@example.com")).status_code == 202


async def test_the_confirmation_form_answers_429_with_retry_after_too(make_config: MakeConfig) -> None:
    config = make_config(VERIFY_3)
    origin = config.server.public_url
    async with running(config, FakeClock(T0)) as (app, _):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.40", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=origin) as browser:
            answers = [
                await browser.post("/auth/magic-link/verify", data={"token": f"guess-{i}"}, headers={"Origin": origin})
                for i in range(4)
            ]
        assert [a.status_code for a in answers] == [401, 401, 401, 429]
        assert answers[3].headers["content-type"].startswith("text/html")
        header = answers[3].headers.get("retry-after")
        assert header is not None and header.isdigit() and int(header) > 0, answers[3].headers


# --- switched off ----------------------------------------------------------------------------------


async def test_rate_limit_enabled_false_turns_every_limit_off(make_config: MakeConfig) -> None:
    config = make_config(
        '[rate_limit]\nenabled = false\nmagic_link_per_email = "1/15m"\n'
        'magic_link_per_ip = "1/1m"\nverify_per_ip = "1/1m"\n'
    )
    async with running(config, FakeClock(T0)) as (app, client):
        for _ in range(4):
            assert (await client.post("/auth/magic-link", json={"email": "a@example.com"})).status_code == 202
        for i in range(4):
            assert (await ask_link(app, "2001:db8::1", f"u{i}@example.com")).status_code == 202
        for _ in range(4):
            response = await client.post("/auth/code/verify", json={"email": "z@example.com", "code": "123456"})
            assert response.status_code == 401
            response = await client.post("/auth/magic-link/verify", json={"token": "guess"})
            assert response.status_code == 401
    assert rate_limited_audit(config) == []
    assert query(config, "SELECT count(*) FROM email_queue WHERE to_address = 'a@example.com'") == [(4,)]


# --- refusals do not write without bound --------------------------------------------------------


def rate_limit_hits(metrics: str, scope: str) -> float:
    found = re.search(rf'^rate_limit_hits_total\{{scope="{scope}"\}} ([0-9.e+]+)$', metrics, re.M)
    assert found, metrics
    return float(found.group(1))


async def test_a_flood_refused_per_ip_writes_one_audit_row_per_window_and_counts_every_refusal(
    make_config: MakeConfig,
) -> None:
    config = make_config(f'[rate_limit]\nmagic_link_per_ip = "3/1m"\n{NO_EMAIL_LIMIT}')
    clock = FakeClock(T0)
    async with running(config, clock) as (app, client):
        for i in range(3):
            assert (await ask_link(app, "198.51.100.1", f"u{i}@example.com")).status_code == 202
        for i in range(1000):
            retry_after(await ask_link(app, "198.51.100.1", f"x{i}@example.com"))
        assert len(rate_limited_audit(config)) == 1
        clock.advance(60)  # the next window: the limit refuses again after 3, and that is a new row
        for i in range(3):
            assert (await ask_link(app, "198.51.100.1", f"v{i}@example.com")).status_code == 202
        retry_after(await ask_link(app, "198.51.100.1", "w@example.com"))
        assert [(s, ip) for s, _, ip, _ in rate_limited_audit(config)] == [(0, "198.51.100.1")] * 2
        assert rate_limit_hits((await client.get("/metrics")).text, "magic_link_per_ip") == 1001


async def test_a_flood_refused_per_email_writes_one_audit_row_per_window_and_counts_every_refusal(
    make_config: MakeConfig,
) -> None:
    config = make_config('[rate_limit]\nmagic_link_per_ip = "100000/1m"\nmagic_link_per_email = "1/15m"\n')
    clock = FakeClock(T0)
    async with running(config, clock) as (app, client):
        assert (await ask_link(app, "198.51.100.1", "a@example.com")).status_code == 202
        for _ in range(1000):
            retry_after(await ask_link(app, "198.51.100.1", "a@example.com"))
        assert len(rate_limited_audit(config)) == 1
        clock.advance(900)
        assert (await ask_link(app, "198.51.100.1", "a@example.com")).status_code == 202
        retry_after(await ask_link(app, "198.51.100.1", "a@example.com"))
        audit = [(e, json.loads(d)) for _, e, _, d in rate_limited_audit(config)]
        assert audit == [("a@example.com", {"scope": "magic_link_per_email"})] * 2
        assert rate_limit_hits((await client.get("/metrics")).text, "magic_link_per_email") == 1001
