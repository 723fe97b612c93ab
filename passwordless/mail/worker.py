"""The mail worker: leases due rows from the queue, sends them through the transport, and
records the outcome — sent, retried later with exponential backoff and jitter, or dead."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3

from passwordless import audit
from passwordless.config import EmailSettings
from passwordless.db import Database
from passwordless.deps import Clock
from passwordless.mail import queue
from passwordless.mail.queue import QueuedEmail
from passwordless.mail.transport import PermanentFailure, TemporaryFailure, Transport

logger = logging.getLogger(__name__)

IDLE_SECONDS = 30.0  # the longest sleep with nothing due; an enqueue wakes the worker at once


class MailWorker:
    def __init__(self, db: Database, settings: EmailSettings, transport: Transport, clock: Clock) -> None:
        self.db, self.settings, self.transport, self.clock = db, settings, transport, clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                batch = await self.db.write(
                    queue.claim, self.clock(), self.settings.lease, self.settings.concurrency
                )
                await asyncio.gather(*(self._deliver(email) for email in batch))
                if batch:
                    continue
                due = await self.db.read(queue.next_due)
            except Exception:
                logger.exception("mail_worker_failed")
                due = None
            delay = IDLE_SECONDS if due is None else min(IDLE_SECONDS, max(0.0, due - self.clock()))
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _deliver(self, email: QueuedEmail) -> None:
        try:
            await self.transport.send(email)
        except PermanentFailure as exc:
            await self.db.write(self._dead, email, str(exc))
        except (TemporaryFailure, OSError, asyncio.TimeoutError) as exc:
            if email.attempts >= self.settings.max_attempts:
                await self.db.write(self._dead, email, str(exc))
            else:
                await self.db.write(queue.mark_retry, email.id, str(exc), self.clock() + self._backoff(email.attempts))
        else:
            await self.db.write(self._sent, email)

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.settings.retry_max, self.settings.retry_initial * 2 ** (attempts - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _sent(self, conn: sqlite3.Connection, email: QueuedEmail) -> None:
        now = self.clock()
        queue.mark_sent(conn, email.id, now)
        audit.record(conn, audit.AuditEvent("email_sent", True, email=email.to, details={"email_id": email.id}), now)

    def _dead(self, conn: sqlite3.Connection, email: QueuedEmail, error: str) -> None:
        now = self.clock()
        queue.mark_dead(conn, email.id, error)
        details = {"email_id": email.id, "error": error[:200]}
        audit.record(conn, audit.AuditEvent("email_dead", False, email=email.to, details=details), now)
        logger.warning("email_dead", extra={"email_id": email.id, "error": error[:200]})
