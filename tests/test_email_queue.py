"""The durable email queue and SMTP delivery, in-process (issue 4; API.md "Email queue", "Audit
log", "Health and metrics"; CONFIG.md email.*).

Store functions run against a real migrated SQLite file; the mail worker runs inside the app
(`running`) or on its own, and delivers to a real SMTP server on 127.0.0.1 (aiosmtpd, see
tests/support/mail.py). A FakeClock is used wherever a test must hold time still (backoff, leases,
health), so nothing sleeps for real longer than a fraction of a second."""

from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import re
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import aiosmtplib
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client.parser import text_string_to_metric_families

from passwordless.config.settings import Config
from passwordless.mail import queue
from passwordless.mail.transport import make_transport
from passwordless.mail.worker import MailWorker
from passwordless.platform import migrate, storage
from passwordless.platform.db import Connection, Database, connect
from passwordless.platform.metrics import Metrics
from passwordless.platform.queues import worker as worker_module
from tests.conftest import MakeConfig
from tests.support.app import FakeClock, deps_of, running
from tests.support.engine import as_dict, connection
from tests.support.mail import (
    Sink,
    SlowSink,
    start_sink,
    text_of,
    tls_server_context,
    wait_for_outbox,
    write_test_certificate,
)
from tests.support.processes import free_port
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

SENDER = "Passwordless Tests <auth@mail.example.test>"
PUBLIC = "http://localhost:3000"
LINK = re.compile(re.escape(PUBLIC) + r"/auth/magic-link/verify\?token=([A-Za-z0-9_\-]+)")
START = 1_700_000_000.0  # a FakeClock start on a whole second
TRY_LATER = "451 4.3.0 try later"
NO_SUCH_USER = "550 5.1.1 no such user"


# --- helpers ------------------------------------------------------------------------------


def smtp_config(
    make_config: MakeConfig, port: int, *, email: str = "", security: str = "none", extra: str = ""
) -> Config:
    """SMTP delivery to 127.0.0.1:port with short retry durations; `email` replaces or adds [email] keys,
    `extra` adds whole sections."""
    keys = {
        "retry_initial": '"100ms"', "retry_max": '"1s"', "lease": '"30s"', "max_attempts": "8",
    }
    for line in email.strip().splitlines():
        name, _, value = line.partition("=")
        keys[name.strip()] = value.strip()
    lines = "\n".join(f"{name} = {value}" for name, value in keys.items())
    return make_config(
        f'[email]\ntransport = "smtp"\nfrom = "{SENDER}"\n{lines}\n'
        f'[email.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "{security}"\ntimeout = "5s"\n{extra}'
    )


def rows(config: Config, sql: str, *params: object) -> list[dict[str, Any]]:
    with connection(config) as conn:
        return [as_dict(r) for r in conn.execute(sql, params).fetchall()]


def emails(config: Config, where: str = "1 = 1", *params: object) -> list[dict[str, Any]]:
    return rows(config, f"SELECT * FROM email_queue WHERE {where} ORDER BY created_at, id", *params)


def audit(config: Config, event_type: str) -> list[dict[str, Any]]:
    return rows(config, "SELECT * FROM audit_logs WHERE event_type = ? ORDER BY id", event_type)


def all_have(config: Config, count: int, where: str, *params: object) -> Callable[[], list[dict[str, Any]]]:
    """A check for `until`: the queue holds `count` rows and every one matches `where`."""

    def check() -> list[dict[str, Any]]:
        found = emails(config)
        matching = emails(config, where, *params)
        return matching if len(found) == count and len(matching) == count else []

    return check


async def sign_in(client: httpx.AsyncClient, address: str) -> None:
    response = await client.post("/auth/magic-link", json={"email": address})
    assert response.status_code == 202, response.text


async def metric_samples(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def depth(samples: dict[Any, float], status: str) -> float:
    return samples[("email_queue_depth", (("status", status),))]


def deliveries(samples: dict[Any, float], result: str) -> float:
    return samples[("email_deliveries_total", (("result", result),))]


def migrated(config: Config) -> None:
    storage.bring_up_to_date(config.database)


class SinkServers:
    """Start SMTP sinks on 127.0.0.1 (on a given port, with aiosmtpd options); `stop(port)`
    stops one, and all still running are stopped at the end of the test."""

    def __init__(self) -> None:
        self.controllers: dict[int, Controller] = {}

    def __call__(self, sink: Sink | None = None, port: int | None = None, **options: object) -> tuple[Sink, int]:
        sink = sink if sink is not None else Sink()
        controller = start_sink(sink, port, **options)
        self.controllers[int(controller.port)] = controller
        return sink, int(controller.port)

    def stop(self, port: int) -> None:
        self.controllers.pop(port).stop()


@pytest.fixture
def sinks() -> Iterator[SinkServers]:
    servers = SinkServers()
    yield servers
    for controller in servers.controllers.values():
        controller.stop()


class TlsSink(Sink):
    """Counts connections by their first (plain) EHLO — after STARTTLS a client says EHLO
    again on the same connection — and records whether each message came over TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.tls_ehlos = 0
        self.over_tls: list[bool] = []

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        if session.ssl is not None:
            with self.lock:
                self.tls_ehlos += 1
            session.host_name = hostname
            return responses
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert server.transport is not None
        with self.lock:
            self.over_tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return await super().handle_DATA(server, session, envelope)


class RefusingSink(Sink):
    """Refuses one recipient at RCPT TO, accepts everyone else."""

    def __init__(self, refused: str, answer: str = NO_SUCH_USER) -> None:
        super().__init__()
        self.refused, self.answer = refused, answer

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address == self.refused:
            return self.answer
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_test_certificate(tmp_path_factory.mktemp("tls"))


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return tls_server_context(*certificate)


# --- delivery -----------------------------------------------------------------------------


async def test_sign_in_email_is_delivered_over_plain_smtp_with_proper_headers(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    sink, port = sinks()
    config = smtp_config(make_config, port)
    async with running(config) as (_, client):
        await asyncio.sleep(0.2)  # the worker has looked at the empty queue and sleeps (up to 30 s)
        before = time.time()
        await sign_in(client, "a@example.com")
        # Delivery within seconds: the enqueue woke the worker.
        [message] = await until(lambda: sink.to("a@example.com"), "the sign-in email", timeout=5)
        sent = await until(all_have(config, 1, "status = 'sent'"), "the row to be marked sent")

        assert message["From"] == SENDER
        assert message["To"] == "a@example.com"
        assert message["Subject"] == "Sign in to passwordless"
        date = email.utils.parsedate_to_datetime(message["Date"])
        assert date.tzinfo is not None and abs(date.timestamp() - before) < 60
        assert re.fullmatch(r"<[^<>@\s]+@mail\.example\.test>", message["Message-ID"]), message["Message-ID"]
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        text = text_of(message)
        html_part = message.get_body(preferencelist=("html",))
        assert html_part is not None
        html = str(html_part.get_content())
        match = LINK.search(text)
        assert match, text
        assert match[0] in html
        # The emailed link is the live one: it signs in.
        verified = await client.post("/auth/magic-link/verify", json={"token": match[1]})
        assert verified.status_code == 200, verified.text

    [row] = sent
    assert row["to_address"] == "a@example.com"
    assert row["body_text"] is None and row["body_html"] is None  # the link and code are erased
    assert row["attempts"] == 1 and row["last_error"] is None and row["lease_expires_at"] is None
    assert row["sent_at"] is not None and row["sent_at"] >= int(before)
    [entry] = audit(config, "email_sent")
    assert entry["email"] == "a@example.com" and entry["success"] == 1
    assert json.loads(entry["details"])["email_id"] == row["id"]
    assert match[1] not in json.dumps(rows(config, "SELECT * FROM audit_logs"))


async def test_starttls_delivery_reuses_one_connection_for_a_burst(
    make_config: MakeConfig, sinks: SinkServers, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # the app trusts the test certificate
    sink = TlsSink()
    _, port = sinks(sink, tls_context=server_tls(certificate), require_starttls=True)
    config = smtp_config(make_config, port, security="starttls", email="concurrency = 1")
    addresses = [f"user{i}@example.com" for i in range(10)]
    async with running(config) as (_, client):
        for address in addresses:
            await sign_in(client, address)
        await until(all_have(config, 10, "status = 'sent'"), "ten emails sent")

    assert sorted(m["To"] for m in sink.received) == sorted(addresses)
    assert sink.over_tls == [True] * 10
    assert sink.connections == 1, "each email opened its own connection"
    assert sink.tls_ehlos == 1
    assert len({m["Message-ID"] for m in sink.received}) == 10


async def test_starttls_with_an_untrusted_certificate_sends_nothing(
    make_config: MakeConfig, sinks: SinkServers, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the test certificate is not trusted
    sink = TlsSink()
    _, port = sinks(sink, tls_context=server_tls(certificate), require_starttls=True)
    config = smtp_config(make_config, port, security="starttls", email='retry_initial = "10s"\nretry_max = "20s"')
    async with running(config, clock=FakeClock(START)) as (_, client):
        await sign_in(client, "a@example.com")
        [row] = await until(all_have(config, 1, "attempts = 1 AND status = 'pending'"), "a failed attempt")
    assert sink.received == []
    assert "certificate" in row["last_error"].lower(), row["last_error"]


async def test_temporary_failures_are_retried_until_delivered(make_config: MakeConfig, sinks: SinkServers) -> None:
    sink, port = sinks(Sink(answers=[TRY_LATER, TRY_LATER]))
    config = smtp_config(make_config, port, email='retry_initial = "10s"\nretry_max = "20s"')
    clock = FakeClock(START)
    async with running(config, clock=clock) as (app, client):
        wake = deps_of(app).magic_link.wake_mail
        await sign_in(client, "a@example.com")
        for attempt in (1, 2):
            [row] = await until(
                all_have(config, 1, "status = 'pending' AND attempts = ?", attempt), f"failed attempt {attempt}"
            )
            assert row["last_error"] == TRY_LATER
            assert row["last_attempt_at"] == int(clock.now)
            assert row["lease_expires_at"] is None and row["body_text"]
            assert row["next_attempt_at"] > clock.now  # not retried until the backoff has passed
            await asyncio.sleep(0.2)
            assert sink.received == [] and emails(config)[0]["attempts"] == attempt
            clock.now = row["next_attempt_at"]
            wake()
        [row] = await until(all_have(config, 1, "status = 'sent'"), "delivery on the third attempt")
        samples = await metric_samples(client)

    assert row["attempts"] == 3
    assert [m["To"] for m in sink.received] == ["a@example.com"]
    assert deliveries(samples, "retry") == 2 and deliveries(samples, "sent") == 1
    assert deliveries(samples, "dead") == 0
    assert len(audit(config, "email_sent")) == 1 and audit(config, "email_dead") == []


async def test_a_permanent_refusal_is_dead_at_once_and_an_operator_can_retry_it(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    sink, port = sinks(Sink(answers=[NO_SUCH_USER]))
    config = smtp_config(make_config, port)
    async with running(config) as (app, client):
        await sign_in(client, "a@example.com")
        [row] = await until(all_have(config, 1, "status = 'dead'"), "a dead email")
        assert row["attempts"] == 1
        assert NO_SUCH_USER in row["last_error"]
        assert row["body_text"] and row["body_html"]  # kept whole, so it can be retried
        assert row["lease_expires_at"] is None
        [entry] = audit(config, "email_dead")
        assert entry["email"] == "a@example.com" and entry["success"] == 0
        assert json.loads(entry["details"])["email_id"] == row["id"]
        await asyncio.sleep(0.3)
        assert emails(config)[0]["attempts"] == 1  # never tried again by itself
        assert deliveries(await metric_samples(client), "dead") == 1

        deps = deps_of(app)
        assert await deps.db.write(queue.retry, row["id"], deps.clock()) is True
        [pending] = emails(config)
        if pending["status"] == "pending":  # the worker may already have it
            assert pending["attempts"] == 0 and pending["last_error"] is None
        deps.magic_link.wake_mail()
        [sent] = await until(all_have(config, 1, "status = 'sent'"), "the retried email sent")
        assert await deps.db.write(queue.retry, row["id"], deps.clock()) is False  # only dead rows
    assert [m["To"] for m in sink.received] == ["a@example.com"]
    assert sent["attempts"] == 1 and sent["body_text"] is None


async def test_only_temporary_answers_end_dead_after_max_attempts(make_config: MakeConfig, sinks: SinkServers) -> None:
    sink, port = sinks(Sink(answers=[TRY_LATER] * 10))
    config = smtp_config(make_config, port, email="max_attempts = 3")
    async with running(config) as (_, client):
        await sign_in(client, "a@example.com")
        [row] = await until(all_have(config, 1, "status = 'dead'"), "a dead email", timeout=15)
        samples = await metric_samples(client)
    assert row["attempts"] == 3
    assert row["last_error"] == TRY_LATER
    assert sink.received == [] and len(sink.answers) == 7  # exactly three DATA commands
    [entry] = audit(config, "email_dead")
    assert json.loads(entry["details"])["attempts"] == 3
    assert deliveries(samples, "retry") == 2 and deliveries(samples, "dead") == 1
    assert depth(samples, "dead") == 1


async def test_outage_then_recovery_delivers_every_email(make_config: MakeConfig, sinks: SinkServers) -> None:
    port = free_port()  # nobody listens here yet
    config = smtp_config(make_config, port, email="max_attempts = 50")
    addresses = [f"user{i}@example.com" for i in range(3)]
    async with running(config) as (_, client):
        for address in addresses:
            await sign_in(client, address)
        failed = await until(all_have(config, 3, "attempts >= 2 AND status != 'sent'"), "failed attempts")
        assert all(r["status"] in ("pending", "sending") for r in failed), failed
        assert all(r["last_error"] for r in emails(config, "status = 'pending'"))
        sink, _ = sinks(port=port)
        await until(all_have(config, 3, "status = 'sent'"), "delivery after the outage", timeout=15)
        await asyncio.sleep(0.2)
    assert sorted(m["To"] for m in sink.received) == addresses


async def test_a_kept_connection_closed_by_the_server_is_replaced_without_a_failed_attempt(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    sink, port = sinks()
    config = smtp_config(make_config, port, email="concurrency = 1")
    async with running(config) as (_, client):
        await sign_in(client, "first@example.com")
        await until(all_have(config, 1, "status = 'sent'"), "the first email")
        # The server restarts: the connection the transport keeps is closed under it.
        sinks.stop(port)
        restarted, _ = sinks(port=port)
        await sign_in(client, "second@example.com")
        [_, row] = await until(all_have(config, 2, "status = 'sent'"), "the second email")
    assert row["to_address"] == "second@example.com"
    assert row["attempts"] == 1 and row["last_error"] is None
    assert [m["To"] for m in sink.received] == ["first@example.com"]
    assert [m["To"] for m in restarted.received] == ["second@example.com"]


async def test_one_refused_recipient_does_not_hold_up_the_others(make_config: MakeConfig, sinks: SinkServers) -> None:
    sink, port = sinks(RefusingSink("bad@example.com"))
    config = smtp_config(make_config, port, email="concurrency = 1")
    good = [f"good{i}@example.com" for i in range(4)]
    async with running(config) as (app, _):
        deps = deps_of(app)
        now = deps.clock()

        def enqueue_all(conn: Connection) -> None:
            queue.enqueue(conn, "bad@example.com", "s", "text", "<p>html</p>", now - 5)  # claimed first
            for address in good:
                queue.enqueue(conn, address, "s", "text", "<p>html</p>", now)

        await deps.db.write(enqueue_all)
        deps.magic_link.wake_mail()
        await until(all_have(config, 5, "status IN ('sent', 'dead')"), "every email finished")
    [bad] = emails(config, "status = 'dead'")
    assert bad["to_address"] == "bad@example.com" and bad["attempts"] == 1
    assert NO_SUCH_USER in bad["last_error"]
    sent = emails(config, "status = 'sent'")
    assert sorted(r["to_address"] for r in sent) == good
    assert all(r["attempts"] == 1 for r in sent)
    assert sorted(m["To"] for m in sink.received) == good
    assert sink.connections == 1  # after the refusal the same connection carried on


# --- several workers, crashes, leases -------------------------------------------------------


async def test_two_workers_on_one_database_send_each_email_exactly_once(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    sink, port = sinks()
    config = smtp_config(make_config, port, email="concurrency = 4")
    migrated(config)
    addresses = [f"user{i:02}@example.com" for i in range(50)]
    databases = [await storage.open_database(config.database), await storage.open_database(config.database)]
    workers = [MailWorker(db, config.email, make_transport(config.email), time.time, Metrics()) for db in databases]
    try:

        def enqueue_all(conn: Connection) -> None:
            for address in addresses:
                queue.enqueue(conn, address, "batch", f"hello {address}", f"<p>hello {address}</p>", time.time())

        await databases[0].write(enqueue_all)
        tasks = [asyncio.create_task(w.run()) for w in workers]
        await until(all_have(config, 50, "status = 'sent'"), "fifty emails sent", timeout=20)
        await asyncio.sleep(0.3)  # a duplicate would have arrived by now
    finally:
        for w in workers:
            await w.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for db in databases:
            await db.close()
    assert sorted(m["To"] for m in sink.received) == addresses  # every one, none twice
    counts = [w.metrics.email_deliveries.labels("sent")._value.get() for w in workers]
    assert sum(counts) == 50
    assert all(r["attempts"] == 1 for r in emails(config))


def test_claim_leases_due_rows_once_and_retakes_them_after_the_lease(make_config: MakeConfig) -> None:
    config = make_config()
    migrated(config)
    with connection(config) as a, connection(config) as b:
        ids = [queue.enqueue(a, f"u{i}@example.com", "s", "t", "h", START) for i in range(5)]
        later = queue.enqueue(a, "later@example.com", "s", "t", "h", START)
        a.execute("UPDATE email_queue SET next_attempt_at = ? WHERE id = ?", (START + 100, later))

        first = queue.claim(a, START, 60, 3)
        second = queue.claim(b, START, 60, 10)
        assert len(first) == 3 and len(second) == 2
        assert {e.id for e in first} | {e.id for e in second} == set(ids)  # disjoint, and not the later one
        assert all(e.attempts == 1 and e.text == "t" and e.html == "h" for e in first + second)
        assert queue.claim(b, START + 59, 60, 10) == []  # leased, and `later` not yet due
        [row] = [as_dict(r) for r in a.execute("SELECT * FROM email_queue WHERE id = ?", (ids[0],))]
        assert row["status"] == "sending" and row["lease_expires_at"] == START + 60
        assert row["last_attempt_at"] == START

        retaken = queue.claim(b, START + 60, 60, 10)  # the leases have run out: a crashed worker's rows
        assert {e.id for e in retaken} == set(ids)
        assert all(e.attempts == 2 for e in retaken)
        assert [e.id for e in queue.claim(a, START + 100, 60, 10)] == [later]


async def test_a_lease_left_by_a_crash_is_taken_again_once_it_expires(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    sink, port = sinks()
    config = smtp_config(make_config, port, email='lease = "1m"')
    migrated(config)
    with connection(config) as conn:  # what a worker killed mid-send leaves behind
        expired = queue.enqueue(conn, "expired@example.com", "s", "text", "<p>html</p>", START - 120)
        live = queue.enqueue(conn, "live@example.com", "s", "text", "<p>html</p>", START - 10)
        conn.execute(
            "UPDATE email_queue SET status = 'sending', attempts = 1, last_attempt_at = ?, lease_expires_at = ?"
            " WHERE id = ?", (START - 61, START - 1, expired),
        )
        conn.execute(
            "UPDATE email_queue SET status = 'sending', attempts = 1, last_attempt_at = ?, lease_expires_at = ?"
            " WHERE id = ?", (START - 10, START + 50, live),
        )
    clock = FakeClock(START)
    async with running(config, clock=clock) as (app, _):
        [taken] = await until(lambda: emails(config, "status = 'sent'"), "the expired lease retaken")
        assert taken["id"] == expired and taken["attempts"] == 2
        await asyncio.sleep(0.3)
        [waiting] = emails(config, "status = 'sending'")
        assert waiting["id"] == live  # its lease still runs: another worker may be sending it
        clock.advance(50)
        deps_of(app).magic_link.wake_mail()
        await until(all_have(config, 2, "status = 'sent'"), "the second lease retaken")
    assert sorted(m["To"] for m in sink.received) == ["expired@example.com", "live@example.com"]


# --- backoff ------------------------------------------------------------------------------


async def test_backoff_doubles_from_retry_initial_with_jitter_and_is_capped_by_retry_max(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    sink, port = sinks(Sink(answers=[TRY_LATER] * 100))
    config = smtp_config(make_config, port, email='retry_initial = "100s"\nretry_max = "400s"\nmax_attempts = 10')
    clock = FakeClock(START)
    # attempt n fails → next try between now + c/2 and now + c, c = min(retry_max, retry_initial * 2^(n-1))
    bounds = {1: (50, 100), 2: (100, 200), 3: (200, 400), 4: (200, 400), 5: (200, 400)}
    async with running(config, clock=clock) as (app, _):
        deps = deps_of(app)

        def enqueue_all(conn: Connection) -> None:
            for i in range(4):
                queue.enqueue(conn, f"u{i}@example.com", "s", "text", "<p>html</p>", clock())

        await deps.db.write(enqueue_all)
        deps.magic_link.wake_mail()
        for attempt, (low, high) in bounds.items():
            failed = await until(
                all_have(config, 4, "status = 'pending' AND attempts = ?", attempt), f"failed attempt {attempt}"
            )
            delays = [r["next_attempt_at"] - clock.now for r in failed]
            assert all(r["last_attempt_at"] == int(clock.now) for r in failed)
            assert all(low <= d <= high for d in delays), (attempt, delays)
            assert len(set(delays)) > 1, f"no jitter: {delays}"
            clock.now = max(r["next_attempt_at"] for r in failed)
            deps.magic_link.wake_mail()
    assert sink.received == []


async def test_sub_second_backoff_is_kept_not_rounded_away(make_config: MakeConfig, sinks: SinkServers) -> None:
    """retry_initial = 100ms: the first retry is 50–100 ms after the failure, not at once."""
    sink, port = sinks(Sink(answers=[TRY_LATER] * 100))
    config = smtp_config(make_config, port, email='retry_initial = "100ms"\nretry_max = "1s"\nmax_attempts = 10')
    clock = FakeClock(START + 0.5)  # time stands still between whole seconds
    async with running(config, clock=clock) as (_, client):
        await sign_in(client, "a@example.com")
        await until(lambda: emails(config, "attempts >= 1 AND status = 'pending'"), "a failed attempt")
        await asyncio.sleep(0.3)  # with the clock held, no retry is due yet
        [row] = emails(config)
    assert row["attempts"] == 1, f"retried {row['attempts'] - 1} time(s) without any time passing"
    assert clock.now + 0.05 <= row["next_attempt_at"] <= clock.now + 0.1
    assert len(sink.answers) == 99


# --- metrics, health, pruning ---------------------------------------------------------------


async def test_metrics_count_the_queue_and_the_deliveries(make_config: MakeConfig, sinks: SinkServers) -> None:
    sink, port = sinks(Sink(answers=[NO_SUCH_USER]))
    config = smtp_config(make_config, port, email="concurrency = 1")
    async with running(config) as (app, client):
        empty = await metric_samples(client)
        assert [depth(empty, s) for s in ("pending", "sending", "sent", "dead")] == [0, 0, 0, 0]
        assert [deliveries(empty, r) for r in ("sent", "retry", "dead")] == [0, 0, 0]
        for i in range(4):
            await sign_in(client, f"u{i}@example.com")
        await until(all_have(config, 4, "status IN ('sent', 'dead')"), "four emails done")
        deps = deps_of(app)
        await deps.db.write(queue.enqueue, "later@example.com", "s", "t", "h", deps.clock() + 3600)
        samples = await metric_samples(client)
    assert depth(samples, "sent") == 3
    assert depth(samples, "dead") == 1
    assert depth(samples, "pending") == 1 and depth(samples, "sending") == 0
    assert deliveries(samples, "sent") == 3
    assert deliveries(samples, "dead") == 1 and deliveries(samples, "retry") == 0
    assert len(sink.received) == 3


async def test_health_is_degraded_while_an_email_waits_longer_than_the_link_lives(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    port = free_port()  # the SMTP server is down
    config = smtp_config(
        make_config, port, email='retry_initial = "10s"\nretry_max = "20s"\nmax_attempts = 100',
        extra='[auth]\nmagic_link_ttl = "15m"\n',
    )
    clock = FakeClock(START)
    async with running(config, clock=clock) as (app, client):
        await sign_in(client, "a@example.com")
        await until(lambda: emails(config, "attempts >= 1 AND status = 'pending'"), "a failed attempt")
        young = await client.get("/health")
        assert young.status_code == 200
        assert young.json()["status"] == "healthy"
        assert young.json()["checks"] == {"database": "ok", "email_queue": "ok"}

        clock.advance(15 * 60 + 1)  # the link in the waiting email has expired
        late = await client.get("/health")
        assert late.status_code == 503
        assert late.json()["status"] == "unhealthy"
        assert late.json()["checks"] == {"database": "ok", "email_queue": "degraded"}

        sink, _ = sinks(port=port)  # the server comes back and the backlog drains
        deps_of(app).magic_link.wake_mail()
        await until(lambda: emails(config, "status = 'sent'"), "the email sent after the outage")
        recovered = await client.get("/health")
        assert recovered.status_code == 200
        assert recovered.json()["checks"]["email_queue"] == "ok"  # a sent email, however old, is fine
    assert [m["To"] for m in sink.received] == ["a@example.com"]


def test_prune_deletes_only_finished_rows_older_than_the_cutoff_in_batches(make_config: MakeConfig) -> None:
    config = make_config()
    migrated(config)
    cutoff = START
    with connection(config) as conn:

        def add(status: str, created: float, finished: float | None) -> str:
            email_id = queue.enqueue(conn, f"{status}@example.com", "s", "t", "h", created)
            conn.execute(
                "UPDATE email_queue SET status = ?, last_attempt_at = ?, attempts = 1 WHERE id = ?",
                (status, int(finished or created), email_id),
            )
            if status == "sent":
                queue.mark_sent(conn, [email_id], finished or created)
            return email_id

        old = [add("sent", cutoff - 900, cutoff - 800) for _ in range(3)] + [
            add("dead", cutoff - 900, cutoff - 700) for _ in range(2)
        ]
        kept = [
            add("sent", cutoff + 10, cutoff + 20),
            add("dead", cutoff + 10, cutoff + 30),
            add("pending", cutoff - 900, None),  # not finished: never pruned, however old
            add("sending", cutoff - 900, cutoff - 800),
        ]
        assert [queue.prune(conn, cutoff, 2) for _ in range(4)] == [2, 2, 1, 0]
        left = {r[0] for r in conn.execute("SELECT id FROM email_queue")}
    assert left == set(kept)
    assert not left & set(old)


# --- stopping -----------------------------------------------------------------------------


async def test_stop_lets_a_send_in_flight_finish(make_config: MakeConfig, sinks: SinkServers) -> None:
    sink = SlowSink(0.5)
    _, port = sinks(sink)
    config = smtp_config(make_config, port)
    async with running(config) as (_, client):
        await sign_in(client, "a@example.com")
        await until(sink.receiving.is_set, "the server receiving the message")
    # Leaving `running` ran the app's shutdown, which waits for the send.
    [row] = emails(config)
    assert row["status"] == "sent" and row["lease_expires_at"] is None
    assert [m["To"] for m in sink.received] == ["a@example.com"]


async def test_stop_hands_back_a_send_that_outlasts_the_grace_period(
    make_config: MakeConfig, sinks: SinkServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "STOP_GRACE_SECONDS", 0.2)
    sink = SlowSink(3)
    _, port = sinks(sink)
    config = smtp_config(make_config, port)
    async with running(config) as (_, client):
        await sign_in(client, "a@example.com")
        await until(sink.receiving.is_set, "the server receiving the message")
    [row] = emails(config)
    assert row["status"] == "pending" and row["lease_expires_at"] is None
    assert row["attempts"] == 0  # the interrupted attempt is not counted
    assert row["body_text"] and row["next_attempt_at"] <= time.time()  # due again at once
    assert sink.received == []
    # The interrupted send's connection was closed, not left open for the garbage collector.
    still_open = [o for o in gc.get_objects() if isinstance(o, aiosmtplib.SMTP) and o.is_connected and o.port == port]
    for smtp in still_open:
        smtp.close()  # so the leak fails this test only, not a later one's teardown
    assert still_open == [], "the app stopped but its SMTP connection is still open"


class GatedDatabase:
    """A Database whose next claim, once `armed`, commits and then waits for `gate` before
    answering: the worker is caught between leasing rows and starting to send them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.armed = False
        self.claimed = asyncio.Event()
        self.gate = asyncio.Event()

    async def write(self, fn: Any, *args: Any) -> Any:
        result = await self.db.write(fn, *args)
        if getattr(fn, "__name__", "") == "_record_and_claim" and self.armed and result[1]:  # rows leased
            self.armed = False
            self.claimed.set()
            await self.gate.wait()
        return result

    async def read(self, fn: Any, *args: Any) -> Any:
        return await self.db.read(fn, *args)

    def listen(self, channel: str, wake: Callable[[], None]) -> None:
        self.db.listen(channel, wake)


async def test_stop_while_the_worker_is_leasing_leaves_nothing_leased(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    """Stop comes while a claim is under way: the rows it leased are sent before stop returns,
    or handed back — never left 'sending' until the lease runs out, never sent after stop."""
    sink, port = sinks()
    config = smtp_config(make_config, port, email='lease = "10m"')
    migrated(config)
    db = await storage.open_database(config.database)
    gated = GatedDatabase(db)
    worker = MailWorker(cast(Database, gated), config.email, make_transport(config.email), time.time, Metrics())
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.1)  # the first, empty, round is over: the worker sleeps
        gated.armed = True
        await db.write(queue.enqueue, "a@example.com", "s", "text", "<p>html</p>", time.time())
        worker.wake()
        await asyncio.wait_for(gated.claimed.wait(), 5)
        stopping = asyncio.create_task(worker.stop())
        await asyncio.sleep(0.1)
        gated.gate.set()
        await asyncio.wait_for(stopping, 15)
        task.cancel()  # what the app's shutdown does next
        await asyncio.gather(task, return_exceptions=True)
        [at_stop] = emails(config)
        received_at_stop = len(sink.received)
        await asyncio.sleep(0.5)
        [later] = emails(config)
    finally:
        if not task.done():
            task.cancel()
        await worker.transport.close()  # a connection a stray send opened after stop(), if any
        await db.close()
    assert at_stop["status"] in ("sent", "pending"), at_stop
    assert at_stop["lease_expires_at"] is None
    assert later["status"] == at_stop["status"], "the worker went on sending after stop() returned"
    assert len(sink.received) == received_at_stop


# --- more transports and concurrency --------------------------------------------------------


class ParallelSink(SlowSink):
    """A slow sink that records the most messages it was receiving at once."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.now_receiving = 0
        self.most_at_once = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.now_receiving += 1
            self.most_at_once = max(self.most_at_once, self.now_receiving)
        try:
            return await super().handle_DATA(server, session, envelope)
        finally:
            with self.lock:
                self.now_receiving -= 1


async def test_up_to_concurrency_emails_are_sent_at_once_over_kept_connections(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    sink = ParallelSink(0.3)
    _, port = sinks(sink)
    config = smtp_config(make_config, port, email="concurrency = 3")
    async with running(config) as (app, _):
        deps = deps_of(app)

        def enqueue_all(conn: Connection) -> None:
            for i in range(9):
                queue.enqueue(conn, f"u{i}@example.com", "s", "text", "<p>html</p>", deps.clock())

        await deps.db.write(enqueue_all)
        deps.magic_link.wake_mail()
        await until(all_have(config, 9, "status = 'sent'"), "nine emails sent")
    assert len(sink.received) == 9
    assert sink.most_at_once == 3  # never more than email.concurrency, and that many in parallel
    assert sink.connections == 3  # one per slot, each reused


async def test_implicit_tls_delivers(
    make_config: MakeConfig, sinks: SinkServers, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    sink = TlsSink()
    _, port = sinks(sink, ssl_context=server_tls(certificate))
    config = smtp_config(make_config, port, security="tls")
    async with running(config) as (_, client):
        await sign_in(client, "a@example.com")
        await until(all_have(config, 1, "status = 'sent'"), "the email sent")
    assert [m["To"] for m in sink.received] == ["a@example.com"]
    assert sink.over_tls == [True]


async def test_file_transport_writes_eml_files_to_outbox_beside_the_database(make_config: MakeConfig) -> None:
    config = make_config('[email]\ntransport = "file"\nfrom = "passwordless <auth@mail.example.test>"\n')
    folder = Path(config.database.path).parent / "outbox"
    assert Path(config.email.file_dir) == folder
    async with running(config) as (_, client):
        await sign_in(client, "a@example.com")
        [message] = await wait_for_outbox(folder, "a@example.com", 1)
        [row] = await until(all_have(config, 1, "status = 'sent'"), "the row marked sent")
    assert (folder / f"{row['id']}.eml").is_file()
    assert message.get_content_type() == "multipart/alternative"
    assert LINK.search(text_of(message))
    assert row["body_text"] is None
    assert not list(folder.glob(".*"))  # no partial files left


async def test_console_transport_prints_the_email(make_config: MakeConfig, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config('[email]\ntransport = "console"\n')
    async with running(config) as (_, client):
        await sign_in(client, "a@example.com")
        await until(all_have(config, 1, "status = 'sent'"), "the row marked sent")
    printed = capsys.readouterr().out
    assert "To: a@example.com" in printed
    assert LINK.search(printed)


def test_a_claim_reads_only_the_rows_it_takes_even_after_statistics_from_an_empty_queue(tmp_path: Path) -> None:
    """Statistics gathered while the queue held one row (ANALYZE, or PRAGMA optimize at a first
    stop) once made SQLite scan the whole queue on every claim. Counted in SQLite's own
    instruction steps, not in time: a claim of 4 rows from 3,000 costs about the same as from 30."""
    path = tmp_path / "auth.db"
    migrate.apply_to_file(path, migrate.discover(migrate.default_dir()))
    conn = connect(path)
    try:
        queue.enqueue(conn, "first@example.com", "s", "text", "<p>html</p>", 0)
        conn.execute("ANALYZE")

        def steps_to_claim(queued: int) -> int:
            conn.execute("DELETE FROM email_queue")
            conn.executemany(
                "INSERT INTO email_queue (id, to_address, subject, body_text, body_html, next_attempt_at, created_at)"
                " VALUES (?, ?, 's', ?, '', ?, 0)",
                [(f"id-{i:05d}", f"u{i}@example.com", "x" * 2000, i) for i in range(queued)],
            )
            count = [0]

            def step() -> int:
                count[0] += 1
                return 0

            conn.set_progress_handler(step, 100)
            try:
                claimed = queue.claim(conn, now=10_000, lease=60, limit=4)
            finally:
                conn.set_progress_handler(None, 0)
            assert [e.id for e in claimed] == ["id-00000", "id-00001", "id-00002", "id-00003"]  # the longest due
            return count[0]

        small, large = steps_to_claim(30), steps_to_claim(3000)
        assert large <= small + 5, (small, large)
    finally:
        conn.close()
