"""The webhook worker: POSTs queued events to their receivers, signed afresh for each attempt
(Standard Webhooks), retried with backoff on a non-2xx answer or a timeout; 410 Gone, or the
last attempt, makes the delivery dead. Runs apart from requests: a slow receiver never slows
a sign-in."""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request

from passwordless import __version__
from passwordless.config.settings import Config
from passwordless.platform import audit
from passwordless.platform.clock import Clock
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.metrics import Metrics
from passwordless.platform.queues.worker import Attempt, QueueWorker, RetryPolicy
from passwordless.webhooks import store
from passwordless.webhooks.signing import signature
from passwordless.webhooks.store import Delivery

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
CONCURRENCY = 4


def retry_policy(config: Config) -> RetryPolicy:
    """Webhooks retry by a policy of their own; its numbers are [email]'s (max_attempts,
    retry_initial … retry_max, lease) until webhooks get settings of their own."""
    email = config.email
    return RetryPolicy(email.max_attempts, email.retry_initial, email.retry_max, email.lease)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer that is not 2xx: a failure, never followed (it would turn the
    POST into a GET and carry the signature elsewhere)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Refused(Exception):
    def __init__(self, message: str, final: bool) -> None:
        super().__init__(message)
        self.final = final


class WebhookWorker(QueueWorker[Delivery]):
    name = "webhook"
    table = "webhook_queue"

    def __init__(self, db: Database, config: Config, clock: Clock, metrics: Metrics) -> None:
        super().__init__(db, clock, retry_policy(config), CONCURRENCY)
        self.config, self.metrics = config, metrics
        self.secrets = {store.hook_key(hook): hook.secret for hook in config.webhooks}
        self._opener = urllib.request.build_opener(_NoRedirects)

    def claim(self, conn: Connection, now: float, limit: int) -> list[Delivery]:
        return store.claim(conn, now, self.lease, limit)

    def recorded(self, labels: list[str]) -> None:
        for label in labels:
            self.metrics.webhook_deliveries.labels(label).inc()

    async def deliver(self, delivery: Delivery) -> Attempt[Delivery]:
        try:
            await asyncio.to_thread(self._post, delivery)
        except Refused as exc:
            return self.failed(delivery, str(exc), final=exc.final)
        return Attempt(delivery, "sent")

    def record(self, conn: Connection, attempts: list[Attempt[Delivery]]) -> list[str]:
        now = self.clock()
        for attempt in attempts:
            delivery, error = attempt.item, attempt.error
            if attempt.result == "sent":
                store.mark_sent(conn, delivery.id, now)
            elif attempt.result == "retry":
                self.retry_later(conn, attempt, now)
            else:
                self.give_up(conn, attempt)
                details = {"webhook_id": delivery.id, "url": delivery.url, "error": error[:200]}
                audit.record(conn, audit.AuditEvent("webhook_dead", False, details=details), now)
                logger.warning("webhook_dead", extra={"webhook_id": delivery.id, "error": error[:200]})
        return [attempt.result for attempt in attempts]

    def _post(self, delivery: Delivery) -> None:
        if delivery.hook_key not in self.secrets:
            raise Refused("this webhook is no longer configured", final=True)
        body = delivery.payload.encode()
        timestamp = int(self.clock())
        headers = {
            "content-type": "application/json",
            "user-agent": f"passwordless/{__version__}",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
        }
        secret = self.secrets[delivery.hook_key]
        if secret:
            headers["webhook-signature"] = signature(secret, delivery.id, timestamp, body)
        request = urllib.request.Request(delivery.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                response.read(1024)
        except urllib.error.HTTPError as exc:
            raise Refused(f"HTTP {exc.code}", final=exc.code == 410) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise Refused(f"{type(exc).__name__}: {exc}", final=False) from None
