"""End to end: the real `passwordless serve` and `passwordless send-test-email` processes
delivering to a real SMTP server on 127.0.0.1 (issue 4; API.md "Email queue"; CONFIG.md email.*).

Servers are started the way tests/test_serve.py starts them (tests/support/live.py's `launch`)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.engine import as_dict, connect, database_url_in
from tests.support.live import LiveServer
from tests.support.mail import Sink, SlowSink, start_sink, text_of, tls_server_context, write_test_certificate
from tests.support.processes import clean_env, cli, free_port
from tests.support.waiting import wait_until

Launch = Callable[..., LiveServer]


@pytest.fixture
def sinks() -> Iterator[Callable[..., tuple[Sink, int]]]:
    controllers: list[Controller] = []

    def start(sink: Sink | None = None, port: int | None = None, **options: object) -> tuple[Sink, int]:
        sink = sink if sink is not None else Sink()
        controller = start_sink(sink, port, **options)
        controllers.append(controller)
        return sink, int(controller.port)

    yield start
    for controller in controllers:
        controller.stop()


class QueuedAsSink(Sink):
    """Accepts with a reply that names the queue id, as real servers do."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        return "250 2.0.0 Ok: queued as 7A1B2C3D" if answer.startswith("250") else answer


def write_config(tmp_path: Path, smtp_port: int, email: str = "", extra: str = "") -> Path:
    """SMTP delivery to 127.0.0.1:smtp_port with short retry durations; `email` replaces or adds
    [email] keys, `extra` adds whole sections."""
    keys = {"retry_initial": '"100ms"', "retry_max": '"1s"', "lease": '"1s"', "max_attempts": "100"}
    for line in email.strip().splitlines():
        name, _, value = line.partition("=")
        keys[name.strip()] = value.strip()
    path = tmp_path / "config.toml"
    path.write_text(
        '[server]\ndrain_delay = "100ms"\n'
        '[database]\npath = "auth.db"\n'
        '[email]\ntransport = "smtp"\nfrom = "passwordless <auth@mail.example.test>"\n'
        + "".join(f"{name} = {value}\n" for name, value in keys.items())
        + f'[email.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\ntimeout = "3s"\n'
        + extra,
        encoding="utf-8",
    )
    return path


def emails(tmp_path: Path) -> list[dict[str, Any]]:
    path, url = tmp_path / "auth.db", database_url_in(tmp_path)
    if not (url or path.exists()):
        return []
    with connect(path, url) as conn:
        return [as_dict(r) for r in conn.execute("SELECT * FROM email_queue ORDER BY created_at, id")]


def all_rows(tmp_path: Path, count: int, ok: Callable[[dict[str, Any]], bool]) -> Callable[[], list[dict[str, Any]]]:
    def check() -> list[dict[str, Any]]:
        found = emails(tmp_path)
        return found if len(found) == count and all(ok(r) for r in found) else []

    return check


# --- serve --------------------------------------------------------------------------------


def test_queued_emails_survive_sigkill_and_arrive_once_after_restart(
    launch: Launch, sinks: Callable[..., tuple[Sink, int]], tmp_path: Path
) -> None:
    smtp_port = free_port()  # the SMTP server is not running yet
    config = write_config(tmp_path, smtp_port)
    addresses = [f"user{i}@example.com" for i in range(5)]
    first = launch("--config", str(config))
    for address in addresses:
        first.request_link(address)
    wait_until(all_rows(tmp_path, 5, lambda r: r["attempts"] >= 1), "a failed attempt at each email", timeout=15)
    first.stop(signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL
    left = emails(tmp_path)
    assert all(r["status"] in ("pending", "sending") and r["body_text"] for r in left), left

    sink, _ = sinks(port=smtp_port)
    second = launch("--config", str(config))
    sent = wait_until(all_rows(tmp_path, 5, lambda r: r["status"] == "sent"), "every email sent after the restart", timeout=15)
    time.sleep(0.5)  # a duplicate would have arrived by now
    assert sorted(m["To"] for m in sink.received) == addresses  # each one, once
    assert all(r["body_text"] is None and r["attempts"] >= 2 for r in sent)
    for message in sink.received:
        assert "/auth/magic-link/verify?token=" in text_of(message)
    logs = second.stop()
    assert second.process.returncode == 0, logs


def test_emails_leased_by_a_killed_server_are_sent_by_the_next_one(
    launch: Launch, sinks: Callable[..., tuple[Sink, int]], tmp_path: Path
) -> None:
    """Killed mid-send (an SMTP server that accepts connections and never answers), the rows stay
    'sending' under a lease; the next server takes them again once the lease (1 s) is over.
    (Two are being sent; the worker may have leased the third ahead of a free slot as well.)"""
    smtp_port = free_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", smtp_port))
    silent.listen(16)
    try:
        config = write_config(tmp_path, smtp_port, email="concurrency = 2")
        first = launch("--config", str(config))
        for i in range(3):
            first.request_link(f"user{i}@example.com")
        wait_until(lambda: len([r for r in emails(tmp_path) if r["status"] == "sending"]) >= 2, "two leased rows", timeout=15)
        first.stop(signal.SIGKILL)
    finally:
        silent.close()
    leased = [r for r in emails(tmp_path) if r["status"] == "sending"]
    assert len(leased) >= 2 and all(r["lease_expires_at"] for r in leased)

    sink, _ = sinks(port=smtp_port)
    second = launch("--config", str(config))
    wait_until(all_rows(tmp_path, 3, lambda r: r["status"] == "sent"), "every email sent after the restart", timeout=15)
    time.sleep(0.3)
    assert sorted(m["To"] for m in sink.received) == [f"user{i}@example.com" for i in range(3)]
    logs = second.stop()
    assert second.process.returncode == 0, logs


def test_sigterm_during_a_slow_send_exits_0_and_loses_nothing(
    launch: Launch, sinks: Callable[..., tuple[Sink, int]], tmp_path: Path
) -> None:
    sink = SlowSink(1.0)
    _, smtp_port = sinks(sink)
    config = write_config(tmp_path, smtp_port, email='lease = "1m"')
    server = launch("--config", str(config))
    server.request_link("a@example.com")
    assert sink.receiving.wait(10), "the email never reached the SMTP server"
    logs = server.stop(signal.SIGTERM)
    assert server.process.returncode == 0, logs
    assert "stopped" in logs
    [row] = emails(tmp_path)
    assert row["lease_expires_at"] is None, row  # not stuck 'sending' until a lease runs out
    if row["status"] == "sent":
        assert [m["To"] for m in sink.received] == ["a@example.com"]
    else:
        assert row["status"] == "pending" and row["body_text"], row  # handed back, whole


def test_two_servers_on_one_database_deliver_each_email_exactly_once(
    launch: Launch, sinks: Callable[..., tuple[Sink, int]], tmp_path: Path
) -> None:
    smtp_port = free_port()  # down at first: both servers' workers keep retrying the same rows
    config = write_config(tmp_path, smtp_port, email="concurrency = 4", extra="[rate_limit]\nenabled = false\n")
    servers = [launch("--config", str(config)), launch("--config", str(config))]
    addresses = [f"user{i:02}@example.com" for i in range(50)]
    for i, address in enumerate(addresses):
        servers[i % 2].request_link(address)
    wait_until(all_rows(tmp_path, 50, lambda r: r["attempts"] >= 1), "a failed attempt at each email", timeout=15)
    sink, _ = sinks(port=smtp_port)
    wait_until(all_rows(tmp_path, 50, lambda r: r["status"] == "sent"), "fifty emails sent", timeout=30)
    time.sleep(0.5)
    received = sorted(m["To"] for m in sink.received)
    assert received == addresses, f"{len(received)} received for 50 emails"
    for server in servers:
        logs = server.stop()
        assert server.process.returncode == 0, logs


# --- send-test-email ----------------------------------------------------------------------


def smtp_env(port: int, security: str = "none", **extra: str) -> dict[str, str]:
    return clean_env(
        EMAIL_TRANSPORT="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_SECURITY=security,
        EMAIL_FROM="passwordless <auth@mail.example.test>", **extra,
    )


def test_send_test_email_reports_the_servers_answer(
    sinks: Callable[..., tuple[Sink, int]], tmp_path: Path
) -> None:
    sink, port = sinks(QueuedAsSink())
    result = cli("send-test-email", "ops@example.com", cwd=tmp_path, env=smtp_env(port))
    assert result.returncode == 0, result.stderr
    assert "ops@example.com" in result.stdout
    assert "queued as 7A1B2C3D" in result.stdout  # the server's own answer
    [message] = sink.received
    assert message["To"] == "ops@example.com" and message["Subject"] == "passwordless test email"
    assert message["Message-ID"] and message["Date"]


def test_send_test_email_over_starttls_trusts_ssl_cert_file(
    sinks: Callable[..., tuple[Sink, int]], tmp_path: Path
) -> None:
    cert, key = write_test_certificate(tmp_path / "tls")
    sink, port = sinks(tls_context=tls_server_context(cert, key), require_starttls=True)
    trusted = cli(
        "send-test-email", "ops@example.com", cwd=tmp_path, env=smtp_env(port, "starttls", SSL_CERT_FILE=str(cert))
    )
    assert trusted.returncode == 0, trusted.stderr
    assert [m["To"] for m in sink.received] == ["ops@example.com"]

    untrusted = cli("send-test-email", "ops@example.com", cwd=tmp_path, env=smtp_env(port, "starttls"))
    assert untrusted.returncode == 1
    assert "certificate" in untrusted.stderr.lower(), untrusted.stderr
    assert len(sink.received) == 1


def test_send_test_email_to_a_port_nobody_listens_on_exits_1_with_the_connection_error(tmp_path: Path) -> None:
    port = free_port()
    result = cli("send-test-email", "ops@example.com", cwd=tmp_path, env=smtp_env(port))
    assert result.returncode == 1
    assert str(port) in result.stderr
    assert "connect" in result.stderr.lower(), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_send_test_email_refused_with_550_exits_1_and_shows_the_answer(
    sinks: Callable[..., tuple[Sink, int]], tmp_path: Path
) -> None:
    sink, port = sinks(Sink(answers=["550 5.1.1 no such user"]))
    result = cli("send-test-email", "ops@example.com", cwd=tmp_path, env=smtp_env(port))
    assert result.returncode == 1
    assert "550 5.1.1 no such user" in result.stderr
    assert "permanent" in result.stderr
    assert "Traceback" not in result.stderr
    assert sink.received == []
