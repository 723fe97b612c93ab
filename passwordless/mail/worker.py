"""The mail worker: leases due emails, sends them through the transport (up to
`email.concurrency` at once), and records the outcome — sent, tried again later with
exponential backoff and jitter, or dead."""

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
from passwordless.queue_worker import QueueWorker

logger = logging.getLogger(__name__)

Outcome = Callable[[sqlite3.Connection, QueuedEmail, str], str]


def backoff(attempts: int, initial: float, ceiling: float) -> float:
    """Exponential, capped, with jitter: between half and all of initial × 2^(attempts-1)."""
    longest = min(ceiling, initial * 2 ** (attempts - 1))
    return random.uniform(longest / 2, longest)


class MailWorker(QueueWorker[QueuedEmail]):
    name = "email"

    def __init__(
        self, db: Database, settings: EmailSettings, transport: Transport, clock: Clock, metrics: Metrics
    ) -> None:
        super().__init__(db, clock, settings.concurrency)
        self.settings, self.transport, self.metrics = settings, transport, metrics

    async def claim(self, free: int) -> list[QueuedEmail]:
        return await self.db.write(queue.claim, self.clock(), self.settings.lease, free)

    async def next_due(self) -> float | None:
        return await self.db.read(queue.next_due)

    async def release(self, ids: list[str]) -> None:
        await self.db.write(queue.release, ids)

    async def close(self) -> None:
        await self.transport.close()

    async def deliver(self, email: QueuedEmail) -> None:
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
        delay = backoff(email.attempts, self.settings.retry_initial, self.settings.retry_max)
        queue.mark_retry(conn, email.id, error, self.clock() + delay)
        logger.info("email_retry", extra={"email_id": email.id, "attempts": email.attempts, "error": error[:200]})
        return "retry"

    def _dead(self, conn: sqlite3.Connection, email: QueuedEmail, error: str) -> str:
        now = self.clock()
        queue.mark_dead(conn, email.id, error)
        details = {"email_id": email.id, "error": error[:200], "attempts": email.attempts}
        audit.record(conn, audit.AuditEvent("email_dead", False, email=email.to, details=details), now)
        logger.warning("email_dead", extra={"email_id": email.id, "error": error[:200]})
        return "dead"
