"""The mail worker: leases due emails, sends them through the transport (up to
`email.concurrency` at once), and records the outcome — sent, tried again later with
exponential backoff and jitter, or dead."""

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
from passwordless.metrics import Metrics
from passwordless.queue_worker import Outcome, QueueWorker

logger = logging.getLogger(__name__)

def backoff(attempts: int, initial: float, ceiling: float) -> float:
    """Exponential, capped, with jitter: between half and all of initial × 2^(attempts-1)."""
    longest = min(ceiling, initial * 2 ** (attempts - 1))
    return random.uniform(longest / 2, longest)


class MailWorker(QueueWorker[QueuedEmail]):
    name = "email"

    def __init__(
        self, db: Database, settings: EmailSettings, transport: Transport, clock: Clock, metrics: Metrics
    ) -> None:
        super().__init__(db, clock, settings.concurrency, settings.lease)
        self.settings, self.transport, self.metrics = settings, transport, metrics

    def claim(self, conn: sqlite3.Connection, now: float, limit: int) -> list[QueuedEmail]:
        return queue.claim(conn, now, self.settings.lease, limit)

    def next_due(self, conn: sqlite3.Connection) -> float | None:
        return queue.next_due(conn)

    def release(self, conn: sqlite3.Connection, ids: list[str]) -> None:
        queue.release(conn, ids)

    def recorded(self, results: list[str]) -> None:
        for result in results:
            self.metrics.email_deliveries.labels(result).inc()

    async def close(self) -> None:
        await self.transport.close()

    async def deliver(self, email: QueuedEmail) -> Outcome:
        try:
            await self.transport.send(email)
        except PermanentFailure as exc:
            return self._dead(email, str(exc))
        except (TemporaryFailure, OSError, asyncio.TimeoutError) as exc:
            if email.attempts >= self.settings.max_attempts:
                return self._dead(email, str(exc))
            return self._retry(email, str(exc))
        except Exception as exc:  # a transport bug must not lose the email: try again later
            logger.exception("email_send_crashed", extra={"email_id": email.id})
            return self._retry(email, f"{type(exc).__name__}: {exc}")
        return self._sent(email)

    def _sent(self, email: QueuedEmail) -> Outcome:
        def record(conn: sqlite3.Connection) -> str:
            now = self.clock()
            queue.mark_sent(conn, email.id, now)
            event = audit.AuditEvent("email_sent", True, email=email.to, details={"email_id": email.id})
            audit.record(conn, event, now)
            return "sent"

        return record

    def _retry(self, email: QueuedEmail, error: str) -> Outcome:
        def record(conn: sqlite3.Connection) -> str:
            delay = backoff(email.attempts, self.settings.retry_initial, self.settings.retry_max)
            queue.mark_retry(conn, email.id, error, self.clock() + delay)
            logger.info("email_retry", extra={"email_id": email.id, "attempts": email.attempts, "error": error[:200]})
            return "retry"

        return record

    def _dead(self, email: QueuedEmail, error: str) -> Outcome:
        def record(conn: sqlite3.Connection) -> str:
            now = self.clock()
            queue.mark_dead(conn, email.id, error)
            details = {"email_id": email.id, "error": error[:200], "attempts": email.attempts}
            audit.record(conn, audit.AuditEvent("email_dead", False, email=email.to, details=details), now)
            logger.warning("email_dead", extra={"email_id": email.id, "error": error[:200]})
            return "dead"

        return record
