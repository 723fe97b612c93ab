"""Issue 15 item 10: every failed attempt counts, whatever the error, so an email (or a webhook)
ends dead after email.max_attempts instead of being retried for ever; non-ASCII addresses
(RFC 6531) go out with SMTPUTF8, and are a permanent failure on a server without it; the
message's Date has a numeric zone and its HTML part is a complete, ordinary-looking document.
Real SMTP servers (aiosmtpd) on 127.0.0.1, a real webhook receiver, the real app."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from passwordless.mail import queue
from passwordless.mail.queue import QueuedEmail
from passwordless.mail.transport import ConsoleTransport
from tests.conftest import MakeConfig
from tests.support.app import FakeClock, running
from tests.support.engine import connection
from tests.support.mail import Sink, wait_for_outbox
from tests.support.signin import NO_RATE_LIMITS
from tests.support.waiting import until
from tests.test_email_queue import (
    LINK,
    START,
    SinkServers,
    all_have,
    audit,
    emails,
    migrated,
    sign_in,
    sinks,
    smtp_config,
)
from tests.test_webhooks import BASE, Server, hook, new_secret

pytestmark = pytest.mark.anyio
__all__ = ["sinks"]  # the fixture, used by name

NON_ASCII = ["zoë@example.com", "a@exämple.com"]


class EnvelopeSink(Sink):
    """Keeps the envelope of every accepted message too: (MAIL options, RCPT TO addresses)."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[tuple[list[str], list[str]]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.envelopes.append((list(envelope.mail_options), list(envelope.rcpt_tos)))
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("address", NON_ASCII)
async def test_a_non_ascii_address_goes_out_with_smtputf8(
    make_config: MakeConfig, sinks: SinkServers, address: str
) -> None:
    sink, port = sinks(EnvelopeSink(), enable_SMTPUTF8=True)
    config = smtp_config(make_config, port, extra=NO_RATE_LIMITS)
    async with running(config) as (_, client):
        await sign_in(client, address)
        [row] = await until(all_have(config, 1, "status = 'sent'"), "the email sent")
    assert row["attempts"] == 1
    [(options, recipients)] = sink.envelopes
    assert "SMTPUTF8" in [o.upper() for o in options]
    assert recipients == [address]
    [message] = sink.received
    assert message["To"] == address
    assert LINK.search(message.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]


@pytest.mark.parametrize("address", NON_ASCII)
async def test_a_server_without_smtputf8_makes_a_non_ascii_address_dead_at_once(
    make_config: MakeConfig, sinks: SinkServers, address: str
) -> None:
    sink, port = sinks(EnvelopeSink(), enable_SMTPUTF8=False)  # aiosmtpd's Controller offers it by default
    config = smtp_config(make_config, port, email="max_attempts = 3", extra=NO_RATE_LIMITS)
    async with running(config) as (_, client):
        await sign_in(client, address)
        await sign_in(client, "plain@example.com")
        await until(all_have(config, 2, "status IN ('sent', 'dead')"), "both emails finished", timeout=15)
        await asyncio.sleep(0.3)
        dead, sent = emails(config, "status = 'dead'"), emails(config, "status = 'sent'")
    assert [r["to_address"] for r in dead] == [address]
    assert dead[0]["attempts"] == 1  # permanent: not tried again
    assert "SMTPUTF8" in dead[0]["last_error"]
    assert [r["to_address"] for r in sent] == ["plain@example.com"]
    assert [m["To"] for m in sink.received] == ["plain@example.com"]


async def test_the_file_transport_writes_a_non_ascii_address(make_config: MakeConfig) -> None:
    config = make_config('[email]\ntransport = "file"\nfrom = "passwordless <auth@mail.example.test>"\n' + NO_RATE_LIMITS)
    folder = Path(config.email.file_dir)
    async with running(config) as (_, client):
        await sign_in(client, "zoë@example.com")
        [message] = await wait_for_outbox(folder, "zoë@example.com", 1)
        await until(all_have(config, 1, "status = 'sent'"), "the row marked sent")
    assert LINK.search(message.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]


async def test_the_console_transport_prints_a_non_ascii_address_even_to_an_ascii_terminal() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    email = QueuedEmail("e1", "zoë@example.com", "Sign in to Zoë's", "Hello Zoë", "", 1)
    await ConsoleTransport("auth@example.com", stream).send(email)
    printed = raw.getvalue().decode("ascii")
    assert "To: zo\\xeb@example.com" in printed and "Hello Zo\\xeb" in printed


# --- every failure counts -------------------------------------------------------------------------


@contextmanager
def garbage_http_server() -> Iterator[str]:
    """Answers every connection with a line that is not HTTP: urllib raises
    http.client.BadStatusLine, which is neither an OSError nor a ValueError."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HELLO THERE\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stopping.set()
        thread.join(5)
        listener.close()


async def test_a_webhook_failing_with_an_unexpected_exception_ends_dead_after_max_attempts(
    make_config: MakeConfig,
) -> None:
    with garbage_http_server() as url:
        config = make_config(BASE + hook(url, new_secret(), ["user.created"]))
        assert config.email.max_attempts == 3
        async with Server.serving(config, time.time) as server:
            await server.sign_in("carl@example.com")
            [dead] = await server.settled(timeout=15)
            assert dead["status"] == "dead" and dead["attempts"] == 3
            assert "BadStatusLine" in dead["last_error"]
            assert await server.metric("retry") == 2 and await server.metric("dead") == 1


# --- what the message looks like ------------------------------------------------------------------


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.styles: list[str] = []
        self.charset: str | None = None
        self.title, self._in_title = "", False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "meta" and found.get("charset"):
            self.charset = found["charset"]
        if found.get("style"):
            self.styles.append(found["style"] or "")
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _luminance(hex_colour: str) -> float:
    digits = hex_colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


async def test_the_delivered_message_has_a_numeric_date_and_a_complete_readable_html_document(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    sink, port = sinks(Sink())
    config = smtp_config(make_config, port)
    async with running(config) as (_, client):
        await sign_in(client, "a@example.com")
        await until(all_have(config, 1, "status = 'sent'"), "the email sent")
    [message] = sink.received
    date = str(message["Date"])
    assert re.search(r" \+0000$", date), date  # RFC 5322 numeric zone, not the obsolete "GMT"
    assert abs((parsedate_to_datetime(date) - datetime.now(timezone.utc)).total_seconds()) < 300

    part = message.get_body(preferencelist=("html",))
    assert part is not None
    document = str(part.get_content())  # type: ignore[attr-defined]
    assert document.lstrip().lower().startswith("<!doctype html>")
    parsed = _Html()
    parsed.feed(document)
    assert parsed.tags[:4] == ["html", "head", "meta", "meta"] or parsed.tags[:3] == ["html", "head", "meta"]
    assert parsed.charset is not None and parsed.charset.lower() == "utf-8"
    assert parsed.title == message["Subject"]
    assert parsed.tags.count("body") == 1 and parsed.tags.count("html") == 1
    # No tiny or faint text (SpamAssassin's FONT_INVIS_* rules): every font size at least 1rem or
    # 14px, and every text colour on the white page readable (contrast 4.5:1 or more).
    for style in parsed.styles:
        for size, unit in re.findall(r"font-size:\s*([\d.]+)(rem|em|px)", style):
            assert float(size) >= (14 if unit == "px" else 1), style
        if "background" in style:
            continue  # a button: its own background, not the page's
        for colour in re.findall(r"(?<!-)color:\s*(#[0-9a-fA-F]{3,6})", style):
            assert (1.05) / (_luminance(colour) + 0.05) >= 4.5, style


async def test_a_row_whose_last_attempt_never_finished_is_dead_not_tried_beyond_the_limit(
    make_config: MakeConfig, sinks: SinkServers
) -> None:
    """A worker killed while sending (say, by whatever that email does to it) leaves a lease;
    once it expires the row must not be tried a ninth time out of eight, by every worker after."""
    sink, port = sinks()
    config = smtp_config(make_config, port, email='max_attempts = 3\nlease = "1m"')
    migrated(config)
    with connection(config) as conn:
        last = queue.enqueue(conn, "last@example.com", "s", "text", "<p>html</p>", START - 600)
        spare = queue.enqueue(conn, "spare@example.com", "s", "text", "<p>html</p>", START - 600)
        for row_id, attempts in ((last, 3), (spare, 2)):
            conn.execute(
                "UPDATE email_queue SET status = 'sending', attempts = ?, last_attempt_at = ?, lease_expires_at = ?"
                " WHERE id = ?", (attempts, START - 61, START - 1, row_id),
            )
    async with running(config, clock=FakeClock(START)) as _:
        await until(all_have(config, 2, "status IN ('sent', 'dead')"), "both rows finished")
    [dead] = emails(config, "status = 'dead'")
    assert dead["id"] == last and dead["attempts"] == 3
    assert "did not finish" in dead["last_error"]
    [sent] = emails(config, "status = 'sent'")
    assert sent["id"] == spare and sent["attempts"] == 3
    assert [m["To"] for m in sink.received] == ["spare@example.com"]
    [entry] = audit(config, "email_dead")
    assert json.loads(entry["details"])["attempts"] == 3
