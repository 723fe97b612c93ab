"""The mail worker: leases due emails, sends them through the transport (up to
`email.concurrency` at once), and records the outcome — sent, tried again later with
exponential backoff and jitter, or dead."""

from __future__ import annotations

import asyncio
import logging

from passwordless.config.settings import EmailSettings
from passwordless.mail import queue
from passwordless.mail.queue import QueuedEmail
from passwordless.mail.transport import PermanentFailure, TemporaryFailure, Transport
from passwordless.platform import audit
from passwordless.platform.clock import Clock
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.metrics import Metrics
from passwordless.platform.queues.worker import Attempt, QueueWorker, RetryPolicy, describe

logger = logging.getLogger(__name__)

def retry_policy(settings: EmailSettings) -> RetryPolicy:
    """Email retries as configured: email.max_attempts, retry_initial … retry_max, lease."""
    return RetryPolicy(settings.max_attempts, settings.retry_initial, settings.retry_max, settings.lease)


class MailWorker(QueueWorker[QueuedEmail]):
    name = "email"
    table = "email_queue"

    def __init__(
        self, db: Database, settings: EmailSettings, transport: Transport, clock: Clock, metrics: Metrics
    ) -> None:
        super().__init__(db, clock, retry_policy(settings), settings.concurrency)
        self.transport, self.metrics = transport, metrics

    def claim(self, conn: Connection, now: float, limit: int) -> list[QueuedEmail]:
        return queue.claim(conn, now, self.lease, limit)

    def recorded(self, labels: list[str]) -> None:
        for label in labels:
            self.metrics.email_deliveries.labels(label).inc()

    async def close(self) -> None:
        await self.transport.close()

    async def deliver(self, email: QueuedEmail) -> Attempt[QueuedEmail]:
        try:
            await self.transport.send(email)
        except PermanentFailure as exc:
            return self.failed(email, str(exc), final=True)
        except (TemporaryFailure, OSError, asyncio.TimeoutError) as exc:
            return self.failed(email, str(exc))
        except Exception as exc:  # a transport bug must not lose the email, nor retry it for ever
            logger.exception("email_send_crashed", extra={"email_id": email.id})
            return self.failed(email, describe(exc))
        return Attempt(email, "sent")

    def record(self, conn: Connection, attempts: list[Attempt[QueuedEmail]]) -> list[str]:
        now = self.clock()
        sent = [a.item for a in attempts if a.result == "sent"]
        if sent:  # the common case, in two statements however many were sent
            queue.mark_sent(conn, [e.id for e in sent], now)
            events = [audit.AuditEvent("email_sent", True, email=e.to, details={"email_id": e.id}) for e in sent]
            audit.record_many(conn, events, now)
        for attempt in attempts:
            email, error = attempt.item, attempt.error
            if attempt.result == "retry":
                self.retry_later(conn, attempt, now)
                logger.info("email_retry", extra={"email_id": email.id, "attempts": email.attempts, "error": error[:200]})
            elif attempt.result == "dead":
                self.give_up(conn, attempt)  # kept whole (an operator may retry it) until pruned
                tried = min(email.attempts, self.policy.max_attempts)  # a retaken lease started none
                details = {"email_id": email.id, "error": error[:200], "attempts": tried}
                audit.record(conn, audit.AuditEvent("email_dead", False, email=email.to, details=details), now)
                logger.warning("email_dead", extra={"email_id": email.id, "error": error[:200]})
        return [a.result for a in attempts]
