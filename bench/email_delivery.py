"""How fast the email queue delivers, against the rate SMTP alone allows on the same machine.

Two paths, each to its own aiosmtpd sink on 127.0.0.1 (bench/smtp_sink.py, in its own process
as a mail server is, which only counts messages and answers 250), with sign-in-shaped messages: a
multipart text (~600 B) + HTML (~1.5 KB) email built by transport.build_message.

- raw: aiosmtplib sends the N messages over `--concurrency` connections opened before the
  clock starts and reused for every message: the ceiling. The messages are built and flattened
  to their wire bytes beforehand, so the loop is SMTP alone. A second, informative raw row
  builds each message in the loop and sends it with sendmail, as SmtpTransport.send does:
  the transport's own cost, without the queue.
- queue: the same N emails are enqueued (queue.enqueue, a few write transactions) into a fresh
  migrated SQLite file in a temp dir; then a MailWorker with the smtp transport (settings from
  load_config, email.concurrency = --concurrency) drains them. Timed from the worker's start
  until every row is 'sent' (a row is marked sent only once the sink answered 250).

The sink is on the same two cores as the client, the worker and the database threads, the
same for every path: absolute rates are lower than against a remote server, the comparison is
fair. The issue's target: the queue costs under 20% of the raw rate, i.e. queue/raw >= 0.80. The
paths alternate within each repetition; medians are reported, with the spread. Every run has
a deadline, and the sinks, connections and temp files are gone when it returns. Prints a
table; asserts nothing.

    .venv/bin/python bench/email_delivery.py [--messages 2000] [--concurrency 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parseaddr
from importlib.metadata import version
from pathlib import Path

import aiosmtplib

from passwordless.config.load import load_config
from passwordless.config.settings import EmailSettings
from passwordless.mail import queue
from passwordless.mail.queue import QueuedEmail
from passwordless.mail.transport import build_message, make_transport
from passwordless.mail.worker import MailWorker
from passwordless.platform import migrate
from passwordless.platform.crypto import new_id
from passwordless.platform.db import SqliteDatabase
from passwordless.platform.metrics import Metrics

SUBJECT = "Sign in to Example"
ENQUEUE_TRANSACTIONS = 4  # "a few write transactions"
STOP_SECONDS = 15.0  # the longest a worker, a connection or a sink may take to shut down


# --- the messages ---------------------------------------------------------------------------


def sign_in_bodies(i: int) -> tuple[str, str]:
    """A ~600-byte text body and a ~1.5 KB HTML body, each with its own link and code."""
    token = os.urandom(24).hex()
    code = f"{(i * 7919) % 1_000_000:06d}"
    link = f"https://auth.example.com/magic-link/verify?token={token}"
    text = (
        "Hello,\n\n"
        "Someone (hopefully you) asked to sign in to Example with this email address.\n\n"
        f"Sign in by opening this link:\n\n    {link}\n\n"
        f"Or enter this code on the sign-in page: {code}\n\n"
        "The link and the code work once, and only for the next 15 minutes (until 14:32 UTC).\n"
        "The request came from 203.0.113.7 using Firefox on Linux.\n\n"
        "If this was not you, you can ignore this email: nobody can sign in without it.\n\n"
        "-- \nExample\n"
    )
    html = (
        '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Sign in to Example</title></head>\n'
        '<body style="margin:0;padding:0;background:#f4f4f5;font-family:-apple-system,Segoe UI,Roboto,'
        'Helvetica,Arial,sans-serif;color:#18181b">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center" '
        'style="padding:32px 16px">\n'
        '<table role="presentation" width="480" cellpadding="0" cellspacing="0" style="background:#ffffff;'
        'border-radius:8px;padding:32px">\n'
        '<tr><td><h1 style="font-size:20px;margin:0 0 16px">Sign in to Example</h1>\n'
        '<p style="font-size:15px;line-height:1.5;margin:0 0 24px">Someone (hopefully you) asked to sign in '
        "to Example with this email address.</p>\n"
        f'<p style="margin:0 0 24px"><a href="{link}" style="display:inline-block;background:#2563eb;'
        'color:#ffffff;text-decoration:none;padding:12px 24px;border-radius:6px;font-weight:600">'
        "Sign in</a></p>\n"
        '<p style="font-size:15px;line-height:1.5;margin:0 0 8px">Or enter this code on the sign-in page:</p>\n'
        f'<p style="font-size:28px;letter-spacing:6px;font-weight:700;margin:0 0 24px">{code}</p>\n'
        '<p style="font-size:13px;line-height:1.5;color:#52525b;margin:0 0 8px">The link and the code work '
        "once, and only for the next 15 minutes (until 14:32 UTC). The request came from 203.0.113.7 "
        "using Firefox on Linux.</p>\n"
        '<p style="font-size:13px;line-height:1.5;color:#52525b;margin:0">If this was not you, you can '
        "ignore this email: nobody can sign in without it.</p>\n"
        "</td></tr></table>\n</td></tr></table>\n</body>\n</html>\n"
    )
    return text, html


def queued_emails(n: int) -> list[QueuedEmail]:
    emails = []
    for i in range(n):
        text, html = sign_in_bodies(i)
        emails.append(QueuedEmail(new_id(), f"user{i}@example.com", SUBJECT, text, html, 1))
    return emails


# --- the sink -------------------------------------------------------------------------------


class SinkProcess:
    """bench/smtp_sink.py in its own process, as a mail server is: it does not share this
    process's interpreter lock with the client, the worker and the database threads."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process, self.port = process, port

    async def count(self) -> tuple[int, int]:
        """Messages and bytes the sink has received so far."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"count\n")
        await self.process.stdin.drain()
        messages, size = (await self.process.stdout.readline()).split()
        return int(messages), int(size)


@asynccontextmanager
async def running_sink() -> AsyncIterator[SinkProcess]:
    """A fresh sink process, gone (stdin closed, then killed if need be) on the way out."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("smtp_sink.py")),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), STOP_SECONDS)
        if not line.startswith(b"port "):
            raise SystemExit("the SMTP sink did not start")
        yield SinkProcess(process, int(line.split()[1]))
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


def smtp_env(port: int, db_path: Path) -> dict[str, str]:
    return {
        "EMAIL_TRANSPORT": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "none",
        "DATABASE_PATH": str(db_path),
    }


def email_settings(port: int, db_path: Path, concurrency: int) -> EmailSettings:
    config = load_config(None, smtp_env(port, db_path), {"email.concurrency": concurrency})
    return config.email


# --- raw: aiosmtplib straight to the sink ---------------------------------------------------


async def raw_rate(
    emails: list[QueuedEmail], concurrency: int, build_in_loop: bool, deadline: float
) -> tuple[float, float]:
    """Messages per second and average bytes per message received by the sink.

    build_in_loop=False: the ceiling. Each message is built to the very bytes that go on the
    wire before the clock starts; the loop only runs SMTP (MAIL, RCPT, DATA) with sendmail.
    build_in_loop=True: what SmtpTransport.send does per message, without the queue:
    build_message, then sendmail."""
    n = len(emails)
    async with running_sink() as sink:
        port = sink.port
        settings = email_settings(port, Path(tempfile.gettempdir()) / "unused.db", concurrency)
        sender = settings.from_address
        envelope_from = parseaddr(sender)[1]
        wire: list[bytes] = [] if build_in_loop else [build_message(sender, e) for e in emails]
        clients = [
            aiosmtplib.SMTP(hostname="127.0.0.1", port=port, use_tls=False, start_tls=False, timeout=30)
            for _ in range(concurrency)
        ]
        try:
            for smtp in clients:
                await smtp.connect()
            order: Iterator[int] = iter(range(n))

            async def client(smtp: aiosmtplib.SMTP) -> None:
                for i in order:
                    if build_in_loop:
                        await smtp.sendmail(envelope_from, [emails[i].to], build_message(sender, emails[i]))
                    else:
                        await smtp.sendmail(envelope_from, [emails[i].to], wire[i])

            started = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(client(s) for s in clients)), deadline)
            elapsed = time.perf_counter() - started
        finally:
            for smtp in clients:
                try:
                    await asyncio.wait_for(smtp.quit(), STOP_SECONDS)
                except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                    smtp.close()
        received, size = await sink.count()
        if received != n:
            print(f"warning: the raw sink received {received} of {n} messages")
        return n / elapsed, size / max(received, 1)


# --- queue: enqueue, then a MailWorker drains it --------------------------------------------


def enqueue_batch(conn: sqlite3.Connection, batch: list[QueuedEmail], now: float) -> None:
    for e in batch:
        queue.enqueue(conn, e.to, e.subject, e.text, e.html, now)


async def queue_rate(emails: list[QueuedEmail], concurrency: int, deadline: float) -> tuple[float, float]:
    """Messages per second from the worker's start until the sink has all N and every row is
    'sent'; and the average bytes per message received by the sink."""
    n = len(emails)
    with tempfile.TemporaryDirectory(prefix="bench-email-") as tmp:
        db_path = Path(tmp) / "queue.db"
        await asyncio.to_thread(migrate.apply_to_file, db_path, migrate.discover(migrate.default_dir()))
        db = await SqliteDatabase.open(db_path)
        try:
            size = -(-n // ENQUEUE_TRANSACTIONS)
            now = time.time()
            for start in range(0, n, size):
                await db.write(enqueue_batch, emails[start : start + size], now)
            async with running_sink() as sink:
                settings = email_settings(sink.port, db_path, concurrency)
                worker = MailWorker(db, settings, make_transport(settings), time.time, Metrics())

                async def drained() -> None:
                    # Ask the sink (cheap) until it has every message, then the database (a
                    # count over the whole queue, not to be run every millisecond meanwhile)
                    # until every row is marked sent.
                    while (await sink.count())[0] < n:
                        await asyncio.sleep(0.005)
                    while (await db.read(queue.depth)).get("sent", 0) < n:
                        await asyncio.sleep(0.001)

                started = time.perf_counter()
                runner = asyncio.create_task(worker.run())
                try:
                    await asyncio.wait_for(drained(), deadline)
                    elapsed = time.perf_counter() - started
                finally:
                    await asyncio.wait_for(worker.stop(), STOP_SECONDS)
                    try:
                        await asyncio.wait_for(runner, STOP_SECONDS)
                    except asyncio.TimeoutError:
                        pass
                received, size = await sink.count()
                if received != n:
                    print(f"warning: the queue's sink received {received} of {n} messages")
                average = size / max(received, 1)
        finally:
            await db.close()
    return n / elapsed, average


# --- the run --------------------------------------------------------------------------------


@dataclass
class Results:
    raw: list[float]
    raw_build: list[float]
    queued: list[float]
    size: list[float]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, c, repeat = max(1, args.messages), args.concurrency, max(1, args.repeat)
    if not 1 <= c <= 64:
        parser.error("--concurrency must be from 1 to 64 (email.concurrency's range)")
    deadline = 30.0 + n / 20  # seconds per run: far above any plausible rate, still bounded

    load_before = os.getloadavg()[0]
    results = Results([], [], [], [])
    for rep in range(repeat):
        emails = queued_emails(n)
        try:
            raw, size = asyncio.run(raw_rate(emails, c, build_in_loop=False, deadline=deadline))
            raw_build, _ = asyncio.run(raw_rate(emails, c, build_in_loop=True, deadline=deadline))
            queued, queued_size = asyncio.run(queue_rate(emails, c, deadline))
        except asyncio.TimeoutError:
            raise SystemExit(f"repetition {rep + 1}: a run took longer than its {deadline:.0f} s deadline") from None
        results.raw.append(raw)
        results.raw_build.append(raw_build)
        results.queued.append(queued)
        results.size.append((size + queued_size) / 2)
        print(
            f"repetition {rep + 1}/{repeat}: raw {raw:.0f}, raw + build {raw_build:.0f}, queue {queued:.0f} msg/s,"
            f" queue/raw {queued / raw:.2f}",
            flush=True,
        )

    raw_median = statistics.median(results.raw)
    ratios = [q / r for q, r in zip(results.queued, results.raw)]
    ratio = statistics.median(ratios)
    print()
    print(
        f"{n} sign-in-shaped emails (~{statistics.median(results.size) / 1024:.1f} KB on the wire), concurrency {c},"
        f" {repeat} repetition{'s' if repeat > 1 else ''}, medians, 127.0.0.1"
    )
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
        f" aiosmtplib {version('aiosmtplib')}, aiosmtpd {version('aiosmtpd')}"
    )
    busy = ""
    if load_before > (os.cpu_count() or 1):
        busy = " (other work was running: the figures may be low and noisy)"
    print(f"load average (1 min): {load_before:.1f} before, {os.getloadavg()[0]:.1f} after{busy}")
    print(f"{'path':<54}{'msg/s':>8}{'min-max':>14}{'vs raw':>9}")
    rows = [
        (f"raw: aiosmtplib sendmail, {c} reused connection(s)", results.raw),
        ("raw + build_message per message", results.raw_build),
        ("queue: MailWorker (smtp) drains the SQLite queue", results.queued),
    ]
    for name, rates in rows:
        median = statistics.median(rates)
        spread = f"{min(rates):.0f}-{max(rates):.0f}"
        print(f"{name:<54}{median:>8.0f}{spread:>14}{median / raw_median:>8.0%}")
    verdict = "met" if ratio >= 0.80 else "NOT met"
    per_rep = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"queue/raw: {ratio:.2f} (per repetition: {per_rep}); target >= 0.80: {verdict}")


if __name__ == "__main__":
    main()
