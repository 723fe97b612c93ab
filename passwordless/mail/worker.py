"""The mail worker: leases due rows from the queue, sends them through the transport (up to
`email.concurrency` at once), and records the outcome — sent, tried again later with
exponential backoff and jitter, or dead. Stopping lets sends in flight finish for a while,
then hands unfinished rows back to the queue."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Callable

from passwordless import audit
from passwordless.config import EmailSettings
from passwordless.db import Database
from passwordless.deps import Clock
from passwordless.mail import queue
from passwordless.mail.queue import QueuedEmail
from passwordless.mail.transport import PermanentFailure, TemporaryFailure, Transport
from passwordless.metrics import Metrics

logger = logging.getLogger(__name__)

Outcome = Callable[[sqlite3.Connection, QueuedEmail, str], str]

IDLE_SECONDS = 30.0  # the longest sleep with nothing due; an enqueue wakes the worker at once
STOP_GRACE_SECONDS = 10.0


class MailWorker:
    def __init__(
        self, db: Database, settings: EmailSettings, transport: Transport, clock: Clock, metrics: Metrics
    ) -> None:
        self.db, self.settings, self.transport, self.clock, self.metrics = db, settings, transport, clock, metrics
        self._wake = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], str] = {}
        self._stopping = False
        self._running = False
        self._loop_done = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self._running = True
        try:
            await self._loop()
        finally:
            self._loop_done.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = IDLE_SECONDS
            try:
                free = self.settings.concurrency - len(self._in_flight)
                if free > 0:
                    for email in await self.db.write(queue.claim, self.clock(), self.settings.lease, free):
                        task = asyncio.create_task(self._deliver(email))
                        self._in_flight[task] = email.id
                        task.add_done_callback(self._finished)
                if len(self._in_flight) < self.settings.concurrency:
                    due = await self.db.read(queue.next_due)
                    delay = IDLE_SECONDS if due is None else min(IDLE_SECONDS, max(0.0, due - self.clock()))
            except Exception:
                logger.exception("mail_worker_failed")
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wake.set()  # a slot is free

    async def stop(self) -> None:
        """Stop claiming; let sends in flight finish, then release what is left to the queue."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._loop_done.wait()  # a claim under way hands its rows to _in_flight first
        tasks = list(self._in_flight)
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in unfinished:
                task.cancel()
            ids = [self._in_flight[t] for t in unfinished if t in self._in_flight]
            if ids:
                await self.db.write(queue.release, ids)
        await self.transport.close()

    async def _deliver(self, email: QueuedEmail) -> None:
        try:
            await self.transport.send(email)
        except PermanentFailure as exc:
            await self._record(self._dead, email, str(exc))
        except (TemporaryFailure, OSError, asyncio.TimeoutError) as exc:
            if email.attempts >= self.settings.max_attempts:
                await self._record(self._dead, email, str(exc))
            else:
                await self._record(self._retry, email, str(exc))
        except Exception as exc:  # a transport bug must not lose the email: try again later
            logger.exception("email_send_crashed", extra={"email_id": email.id})
            await self._record(self._retry, email, f"{type(exc).__name__}: {exc}")
        else:
            await self._record(self._sent, email, "")

    async def _record(self, outcome: Outcome, email: QueuedEmail, error: str) -> None:
        result = await self.db.write(outcome, email, error)
        self.metrics.email_deliveries.labels(result).inc()

    def _sent(self, conn: sqlite3.Connection, email: QueuedEmail, error: str) -> str:
        now = self.clock()
        queue.mark_sent(conn, email.id, now)
        audit.record(conn, audit.AuditEvent("email_sent", True, email=email.to, details={"email_id": email.id}), now)
        return "sent"

    def _retry(self, conn: sqlite3.Connection, email: QueuedEmail, error: str) -> str:
        ceiling = min(self.settings.retry_max, self.settings.retry_initial * 2 ** (email.attempts - 1))
        queue.mark_retry(conn, email.id, error, self.clock() + random.uniform(ceiling / 2, ceiling))
        logger.info("email_retry", extra={"email_id": email.id, "attempts": email.attempts, "error": error[:200]})
        return "retry"

    def _dead(self, conn: sqlite3.Connection, email: QueuedEmail, error: str) -> str:
        now = self.clock()
        queue.mark_dead(conn, email.id, error)
        details = {"email_id": email.id, "error": error[:200], "attempts": email.attempts}
        audit.record(conn, audit.AuditEvent("email_dead", False, email=email.to, details=details), now)
        logger.warning("email_dead", extra={"email_id": email.id, "error": error[:200]})
        return "dead"
