"""Webhooks (API.md "Webhooks", "Health and metrics", "Audit log"; CONFIG.md [[webhooks]]): events
POSTed to a real HTTP receiver on 127.0.0.1, signed per the Standard Webhooks scheme and checked
here with an implementation of our own; the events filter; retries with the same webhook-id and a
fresh timestamp and signature; dead after email.max_attempts or at once on 410 (audited, counted in
/metrics); a slow receiver never slows a sign-in; every event type; events queued in the very
transaction of what caused them; and the configuration's refusals."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from passwordless.config.load import ConfigError
from passwordless.magic_link import service as magic_link_service
from passwordless.webhooks import worker as webhook_worker
from tests.conftest import MakeConfig
from tests.support.app import AppServer, FakeClock
from tests.support.authenticator import SoftAuthenticator
from tests.support.signin import (
    NO_RATE_LIMITS,
    assert_error,
    claims,
    count,
    last_email,
    request_sign_in,
    rows,
    verify_code,
    verify_link,
)
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

ORIGIN = "http://localhost:3000"
ADMIN_TOKEN = "admin-token-0123456789-abcdefghijklmnopqrstuvwxyz"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# email.max_attempts is the webhooks' too; retry_initial / retry_max give their backoff.
EMAIL = '[email]\ntransport = "file"\nmax_attempts = 3\nretry_initial = "100ms"\nretry_max = "200ms"\n'
BASE = EMAIL + NO_RATE_LIMITS + f'[admin]\ntoken = "{ADMIN_TOKEN}"\n'
TOLERANCE = 5 * 60  # Standard Webhooks: receivers refuse timestamps further off than this


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


# --- a real receiver ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def timestamp(self) -> int:
        return int(self.headers["webhook-timestamp"])

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """Records every request; answers the statuses of `script` in order (an int, or (status,
    seconds to wait first)), then `default`."""

    script: list[int | tuple[int, float]] = field(default_factory=list)
    default: int = 200
    delay: float = 0.0
    location: str | None = None  # sent with a 3xx answer; a GET is answered 200
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.handle(self)

            do_GET = do_PUT = do_DELETE = do_HEAD = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length", "0"))
        body = request.rfile.read(length)
        with self.lock:
            self.hits.append(Hit(
                request.command, request.path, {k.lower(): v for k, v in request.headers.items()}, body,
                time.monotonic(),
            ))
            if request.command != "POST":
                step: int | tuple[int, float] = 200
            else:
                step = self.script.pop(0) if self.script else self.default
        status, wait = step if isinstance(step, tuple) else (step, self.delay)
        time.sleep(wait)
        try:
            request.send_response(status)
            if self.location and 300 <= status < 400:
                request.send_header("location", self.location)
            request.send_header("content-length", "2")
            request.end_headers()
            request.wfile.write(b"ok")
        except OSError:  # the sender gave up waiting
            pass

    def on(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    thread = threading.Thread(target=receiver.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(5)


# --- an implementation of Standard Webhooks verification of our own -------------------------------


def expected_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_"):])
    signed = f"{msg_id}.{timestamp}.{body.decode('utf-8')}".encode()
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_ok(secret: str, hit: Hit) -> bool:
    expected = expected_signature(secret, hit.headers["webhook-id"], hit.headers["webhook-timestamp"], hit.body)
    for part in hit.headers.get("webhook-signature", "").split(" "):
        version, _, value = part.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return True
    return False


def check(hit: Hit, secret: str, now: float) -> dict[str, Any]:
    """A delivery as a receiver would take it: POST, JSON, all three headers, a signature that
    verifies with `secret` (and not with another), a fresh timestamp, the documented body."""
    assert hit.method == "POST"
    assert hit.headers["content-type"].startswith("application/json")
    assert hit.headers["webhook-id"] and hit.headers["webhook-id"].isascii()
    assert re.fullmatch(r"\d+", hit.headers["webhook-timestamp"]), hit.headers
    assert abs(hit.timestamp - now) <= TOLERANCE
    assert signature_ok(secret, hit), hit.headers
    assert not signature_ok(new_secret(), hit)
    body = hit.json
    assert set(body) == {"type", "timestamp", "data"}, body
    moment = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert moment.tzinfo is not None
    assert abs(moment.timestamp() - now) <= TOLERANCE
    assert isinstance(body["data"]["user_id"], str) and isinstance(body["data"]["email"], str)
    return body


# --- the running server ---------------------------------------------------------------------------


def hook(url: str, secret: str | None, events: list[str] | None = None) -> str:
    text = f'\n[[webhooks]]\nurl = "{url}"\n'
    if secret is not None:
        text += f'secret = "{secret}"\n'
    if events is not None:
        text += f"events = {json.dumps(events)}\n"
    return text


class Server(AppServer):
    """Started on real time (`Server.serving(config, time.time)`) unless a test moves the clock."""

    def deliveries(self, where: str = "1 = 1", *params: object) -> list[dict[str, Any]]:
        return rows(self.config, f"SELECT * FROM webhook_queue WHERE {where} ORDER BY created_at, id", *params)

    async def settled(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every queued delivery finished (sent or dead)."""
        await until(lambda: count(self.config, "webhook_queue", "status IN ('pending', 'sending')") == 0, timeout=timeout)
        return self.deliveries()

    async def metric(self, result: str) -> float:
        text = (await self.http.get("/metrics")).text
        match = re.search(rf'^webhook_deliveries_total\{{result="{result}"\}} (\S+)$', text, re.M)
        assert match, text
        return float(match[1])


# --- what is sent ---------------------------------------------------------------------------------


async def test_a_first_sign_in_sends_user_created_and_login_succeeded_signed(make_config: MakeConfig) -> None:
    every, created_only = new_secret(), new_secret()
    with receiving(Receiver()) as receiver:
        config = make_config(
            BASE + hook(receiver.url("/all"), every) + hook(receiver.url("/created"), created_only, ["user.created"])
        )
        async with Server.serving(config, time.time) as server:
            signed_in = await server.sign_in("alice@example.com")
            queued = await server.settled()
            assert {(d["url"], d["event_type"]) for d in queued} == {
                (receiver.url("/all"), "user.created"), (receiver.url("/all"), "login.succeeded"),
                (receiver.url("/created"), "user.created"),
            }
            assert all(d["status"] == "sent" and d["attempts"] == 1 for d in queued)
            await until(lambda: len(receiver.hits) == 3)

            user = signed_in["user"]
            by_type = {}
            for hit in receiver.on("/all"):
                body = check(hit, every, time.time())
                by_type[body["type"]] = body
            assert set(by_type) == {"user.created", "login.succeeded"}
            assert by_type["user.created"]["data"] == {"user_id": user["id"], "email": "alice@example.com"}
            login = by_type["login.succeeded"]["data"]
            assert login["user_id"] == user["id"] and login["email"] == "alice@example.com"
            assert login["session_id"] == claims(signed_in["access_token"])["sid"]
            assert login.get("method", "email") == "email"

            # The filtered hook got user.created only, signed with its own secret.
            [only] = receiver.on("/created")
            assert check(only, created_only, time.time())["type"] == "user.created"
            assert not signature_ok(every, only)
            assert only.id not in {h.id for h in receiver.on("/all")}
            # Each delivery's id is the one stored, and the body is the stored payload.
            stored = {d["id"]: d for d in queued}
            for hit in receiver.hits:
                assert hit.body.decode() == stored[hit.id]["payload"]

            # A second sign-in of the same user: login.succeeded alone, and nothing for /created.
            again = await server.sign_in("alice@example.com", by_code=True)
            queued = await server.settled()
            assert len(queued) == 4
            await until(lambda: len(receiver.hits) == 4)
            assert len(receiver.on("/created")) == 1
            latest = check(receiver.on("/all")[-1], every, time.time())
            assert latest["type"] == "login.succeeded"
            assert latest["data"]["session_id"] == claims(again["access_token"])["sid"]
            assert await server.metric("sent") == 4


async def test_a_500_is_retried_with_the_same_id_and_a_new_timestamp_and_signature(make_config: MakeConfig) -> None:
    secret = new_secret()
    clock = FakeClock()
    with receiving(Receiver(script=[500, 200])) as receiver:
        config = make_config(BASE + hook(receiver.url(), secret, ["user.created"]))
        async with Server.serving(config, clock) as server:
            await server.sign_in("bob@example.com")
            await until(lambda: len(receiver.hits) == 1)
            await until(lambda: server.deliveries()[0]["status"] == "pending")
            [waiting] = server.deliveries()
            assert waiting["attempts"] == 1 and "500" in waiting["last_error"]
            assert waiting["next_attempt_at"] > clock()  # backoff: not again at once
            await asyncio.sleep(0.5)
            assert len(receiver.hits) == 1, "retried before its backoff was over"

            clock.advance(30)
            await until(lambda: len(receiver.hits) == 2)
            [delivered] = await server.settled()
            assert delivered["status"] == "sent" and delivered["attempts"] == 2

            first, second = receiver.hits
            assert first.id == second.id == delivered["id"]
            assert first.body == second.body
            assert second.timestamp == first.timestamp + 30
            assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
            check(first, secret, clock() - 30)
            check(second, secret, clock())
            assert await server.metric("retry") == 1
            assert await server.metric("sent") == 1
            assert await server.metric("dead") == 0


async def test_dead_after_max_attempts_audited_and_counted(make_config: MakeConfig) -> None:
    secret = new_secret()
    with receiving(Receiver(default=500)) as receiver:
        config = make_config(BASE + hook(receiver.url(), secret, ["user.created"]))
        assert config.email.max_attempts == 3
        async with Server.serving(config, time.time) as server:
            await server.sign_in("carl@example.com")
            [dead] = await server.settled()
            assert dead["status"] == "dead" and dead["attempts"] == 3 and "500" in dead["last_error"]
            await asyncio.sleep(0.5)
            assert len(receiver.hits) == 3, "a dead delivery was tried again"

            assert {h.id for h in receiver.hits} == {dead["id"]}
            for hit in receiver.hits:
                check(hit, secret, time.time())
            # Backoff between attempts: at least half of 100 ms, then of 200 ms.
            gaps = [b.at - a.at for a, b in zip(receiver.hits, receiver.hits[1:])]
            assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps

            [audited] = rows(config, "SELECT * FROM audit_logs WHERE event_type = 'webhook_dead'")
            assert audited["success"] == 0
            details = json.loads(audited["details"])
            assert details["webhook_id"] == dead["id"] and details["url"] == receiver.url()
            assert secret not in audited["details"]
            assert await server.metric("dead") == 1
            assert await server.metric("retry") == 2
            assert await server.metric("sent") == 0


async def test_410_gone_makes_the_delivery_dead_at_once(make_config: MakeConfig) -> None:
    secret = new_secret()
    with receiving(Receiver(default=410)) as receiver:
        config = make_config(BASE + hook(receiver.url(), secret, ["user.created"]))
        async with Server.serving(config, time.time) as server:
            await server.sign_in("dora@example.com")
            [dead] = await server.settled()
            assert dead["status"] == "dead" and dead["attempts"] == 1 and "410" in dead["last_error"]
            await asyncio.sleep(0.6)
            assert len(receiver.hits) == 1
            check(receiver.hits[0], secret, time.time())
            assert count(config, "audit_logs", "event_type = 'webhook_dead'") == 1
            assert await server.metric("dead") == 1
            assert await server.metric("retry") == 0


@pytest.mark.parametrize("status", [301, 302, 307])
async def test_a_redirect_is_not_success(make_config: MakeConfig, status: int) -> None:
    """Only 2xx is success: a 3xx answer is not followed (a POST turned into a bodiless GET would
    lose the event) and counts as a failed attempt."""
    secret = new_secret()
    receiver = Receiver(default=status)
    with receiving(receiver):
        receiver.location = receiver.url("/moved")
        config = make_config(BASE + hook(receiver.url(), secret, ["user.created"]))
        async with Server.serving(config, time.time) as server:
            await server.sign_in("finn@example.com")
            [delivery] = await server.settled()
            assert receiver.on("/moved") == [], "the redirect was followed"
            assert delivery["status"] == "dead" and delivery["attempts"] == 3, delivery
            assert await server.metric("sent") == 0


async def test_a_timeout_is_retried(make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_worker, "TIMEOUT_SECONDS", 0.3)
    secret = new_secret()
    with receiving(Receiver(script=[(200, 1.0)])) as receiver:
        config = make_config(BASE + hook(receiver.url(), secret, ["user.created"]))
        async with Server.serving(config, time.time) as server:
            await server.sign_in("eli@example.com")
            [delivered] = await server.settled()
            assert delivered["status"] == "sent" and delivered["attempts"] == 2
            assert [h.id for h in receiver.hits] == [delivered["id"]] * 2
            assert await server.metric("retry") == 1 and await server.metric("sent") == 1


async def test_a_slow_receiver_never_slows_a_sign_in(make_config: MakeConfig) -> None:
    secret = new_secret()
    with receiving(Receiver(delay=3.0)) as receiver:
        config = make_config(BASE + hook(receiver.url(), secret))
        async with Server.serving(config, time.time) as server:
            await server.sign_in("fred@example.com")
            await until(lambda: len(receiver.hits) >= 1, timeout=5)  # the receiver is now sitting on a delivery
            assert count(config, "webhook_queue", "status = 'sending'") >= 1

            accepted = await server.http.post("/auth/magic-link", json={"email": "gina@example.com"})
            assert accepted.status_code == 202
            token, _ = (await last_email(config, "gina@example.com")).token_and_code
            verified = await verify_link(server.http, token)
            assert verified.status_code == 200
            # Both were answered while the receiver still sat on its first delivery: sign-in did
            # not wait for it (an order of events, not a timing).
            assert count(config, "webhook_queue", "status = 'sending'") >= 1

            queued = await server.settled(15)
            assert len(queued) == 4 and all(d["status"] == "sent" for d in queued)


# --- every event ----------------------------------------------------------------------------------


async def test_passkey_session_and_user_events(make_config: MakeConfig) -> None:
    secret = new_secret()
    with receiving(Receiver()) as receiver:
        config = make_config(BASE + hook(receiver.url(), secret))
        async with Server.serving(config, time.time) as server:
            http = server.http
            first = await server.sign_in("hana@example.com")
            user_id = first["user"]["id"]
            headers = {"authorization": f"Bearer {first['access_token']}"}
            options = await http.post("/auth/passkeys/register/options", json={}, headers=headers)
            authenticator = SoftAuthenticator()
            credential = authenticator.make_credential(options.json()["options"], ORIGIN)
            made = await http.post("/auth/passkeys/register/verify", json={"credential": credential}, headers=headers)
            assert made.status_code == 201, made.text
            passkey_id = made.json()["id"]

            second = await server.sign_in("hana@example.com", by_code=True)
            login_options = await http.post("/auth/passkeys/login/options", json={})
            by_passkey = await http.post(
                "/auth/passkeys/login/verify",
                json={"credential": authenticator.get_assertion(login_options.json()["options"], ORIGIN)},
            )
            assert by_passkey.status_code == 200, by_passkey.text
            second_sid = claims(second["access_token"])["sid"]
            ended = await http.delete(f"/auth/sessions/{second_sid}", headers=headers)
            assert ended.status_code == 204
            revoked = await http.delete(f"/admin/users/{user_id}/sessions", headers=ADMIN)
            assert revoked.json() == {"revoked": 2}
            deleted = await http.delete(f"/admin/users/{user_id}", headers=ADMIN)
            assert deleted.status_code == 204

            queued = await server.settled()
            assert all(d["status"] == "sent" for d in queued)
            await until(lambda: len(receiver.hits) == len(queued))
            bodies = {h.id: check(h, secret, time.time()) for h in receiver.hits}
            events = [bodies[d["id"]] for d in queued]  # in the order they were queued
            assert [e["type"] for e in events] == [
                "user.created", "login.succeeded", "passkey.registered", "login.succeeded", "login.succeeded",
                "sessions.revoked", "sessions.revoked", "user.deleted",
            ]
            for event in events:
                assert event["data"]["user_id"] == user_id and event["data"]["email"] == "hana@example.com"
            assert events[2]["data"]["passkey_id"] == passkey_id
            assert events[3]["data"]["session_id"] == second_sid
            assert events[4]["data"]["session_id"] == claims(by_passkey.json()["access_token"])["sid"]
            assert events[4]["data"].get("method", "passkey") == "passkey"
            assert events[5]["data"]["session_id"] == second_sid and events[5]["data"]["revoked"] == 1
            assert events[6]["data"]["revoked"] == 2
            assert set(events[7]["data"]) == {"user_id", "email"}


async def test_events_are_queued_in_the_transaction_of_the_sign_in(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = new_secret()
    clock = FakeClock()
    with receiving(Receiver()) as receiver:
        config = make_config(BASE + hook(receiver.url(), secret))
        async with Server.serving(config, clock) as server:
            http = server.http
            token, code = await request_sign_in(http, config, "ian@example.com")
            later, _ = await request_sign_in(http, config, "ian@example.com")
            assert count(config, "webhook_queue") == 0  # asking for a link is no event

            # Refused sign-ins queue nothing.
            wrong = f"{(int(code) + 1) % 1_000_000:06d}"
            assert_error(await verify_code(http, "ian@example.com", wrong), 401, "invalid_code")
            assert_error(await verify_link(http, "x" * 43), 401, "invalid_token")
            assert count(config, "webhook_queue") == 0

            # A sign-in that fails after its events were queued leaves none of them behind.
            real_audit = magic_link_service._audit

            def failing_audit(conn: Any, event: str, *args: Any) -> None:
                real_audit(conn, event, *args)
                if event == "magic_link_verified":
                    raise RuntimeError("the disk is full")

            monkeypatch.setattr(magic_link_service, "_audit", failing_audit)
            failed = await verify_link(http, token)
            assert failed.status_code == 500
            monkeypatch.undo()
            assert count(config, "webhook_queue") == 0
            assert count(config, "users") == 0
            assert count(config, "sessions") == 0

            # The same ticket then works, and the events come with it.
            done = await verify_link(http, token)
            assert done.status_code == 200, done.text
            queued = server.deliveries()
            assert [d["event_type"] for d in queued] == ["user.created", "login.succeeded"]
            assert_error(await verify_link(http, token), 401, "invalid_token")  # spent
            await server.settled()  # delivered before the clock jumps past their leases
            await until(lambda: len(receiver.hits) == 2)
            clock.advance(16 * 60)
            assert_error(await verify_link(http, later), 401, "invalid_token")  # expired
            assert len(server.deliveries()) == 2
            await server.settled()
            assert len(receiver.hits) == 2


async def test_each_hook_signs_with_its_own_secret_even_on_a_shared_url(make_config: MakeConfig) -> None:
    """Two [[webhooks]] entries may point at one URL (say, one receiver for two teams' secrets)."""
    first, second = new_secret(), new_secret()
    with receiving(Receiver()) as receiver:
        config = make_config(
            BASE + hook(receiver.url(), first, ["user.created"]) + hook(receiver.url(), second, ["login.succeeded"])
        )
        async with Server.serving(config, time.time) as server:
            await server.sign_in("jan@example.com")
            await server.settled()
            await until(lambda: len(receiver.hits) == 2)
            for hit in receiver.hits:
                secret = first if hit.json["type"] == "user.created" else second
                assert signature_ok(secret, hit), f"{hit.json['type']} was not signed with its hook's secret"


# --- configuration --------------------------------------------------------------------------------

PRODUCTION = (
    'environment = "production"\n[server]\npublic_url = "https://auth.example.com"\n'
    f'[jwt]\nsecret = "{"s" * 48}"\n[email]\ntransport = "file"\n'
)


@pytest.mark.parametrize("url", ["ftp://x", "ftp://hooks.example.com/in", "file:///etc/passwd", "hooks.example.com",
                                 "javascript:alert(1)", ""])
def test_a_webhook_url_that_is_not_http_is_refused(make_config: MakeConfig, url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(hook(url, new_secret()))
    assert "webhooks" in str(refused.value) and "url" in str(refused.value)


def test_a_malformed_secret_is_refused(make_config: MakeConfig) -> None:
    with pytest.raises(ConfigError, match=r"webhooks"):
        make_config(hook("https://hooks.example.com/in", "not-a-whsec-secret"))


def test_production_refuses_a_webhook_without_a_secret(make_config: MakeConfig) -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(PRODUCTION + hook("https://hooks.example.com/in", None))
    assert "webhooks[0].secret" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert make_config(PRODUCTION + hook("https://hooks.example.com/in", new_secret())).webhooks
    # Development allows one (unsigned deliveries on a laptop).
    assert make_config(hook("http://127.0.0.1:9/in", None)).webhooks[0].secret == ""
