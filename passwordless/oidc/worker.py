"""The back-channel logout worker: POSTs each queued logout token (form field logout_token,
signed afresh for each attempt like the ID tokens) to the client's backchannel_logout_uri; only a
2xx is success; anything else, or a timeout, is tried again with backoff (QueueWorker), then dead."""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from urllib.parse import urlencode

from passwordless import __version__
from passwordless.oidc import backchannel, signing
from passwordless.oidc.backchannel import Delivery
from passwordless.platform import audit
from passwordless.platform.clock import Clock
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.metrics import Metrics
from passwordless.platform.queues.worker import Attempt, QueueWorker, RetryPolicy

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
CONCURRENCY = 4


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is not a 2xx: a failure, never followed."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class BackchannelWorker(QueueWorker[Delivery]):
    name = "oidc_backchannel"
    table = backchannel.TABLE

    def __init__(self, db: Database, clock: Clock, policy: RetryPolicy, metrics: Metrics, issuer: str) -> None:
        super().__init__(db, clock, policy, CONCURRENCY)
        self.metrics, self.issuer = metrics, issuer
        self._opener = urllib.request.build_opener(_NoRedirects)

    def claim(self, conn: Connection, now: float, limit: int) -> list[Delivery]:
        return backchannel.claim(conn, now, self.lease, limit)

    def recorded(self, labels: list[str]) -> None:
        for label in labels:
            self.metrics.oidc_backchannel_deliveries.labels(label).inc()

    async def deliver(self, delivery: Delivery) -> Attempt[Delivery]:
        now = self.clock()
        try:
            keys = await self.db.read(signing.published, now)
            key = signing.signing_key(keys, delivery.algorithm, now)
        except LookupError as exc:
            return self.failed(delivery, str(exc))
        token = signing.sign(key, delivery.algorithm, backchannel.logout_claims(delivery, self.issuer, now),
                             backchannel.LOGOUT_TYPE)
        error = await asyncio.to_thread(self._post, delivery.url, token)
        return Attempt(delivery, "sent") if error is None else self.failed(delivery, error)

    def record(self, conn: Connection, attempts: list[Attempt[Delivery]]) -> list[str]:
        now = self.clock()
        for attempt in attempts:
            delivery = attempt.item
            if attempt.result == "sent":
                backchannel.mark_sent(conn, delivery.id, now)
            elif attempt.result == "retry":
                self.retry_later(conn, attempt, now)
            else:
                self.give_up(conn, attempt)
                details = {"delivery_id": delivery.id, "client_id": delivery.client_id, "error": attempt.error[:200]}
                audit.record(conn, audit.AuditEvent("oidc_backchannel_dead", False, delivery.user_id, details=details), now)
                logger.warning("oidc_backchannel_dead", extra=details)
        return [attempt.result for attempt in attempts]

    def _post(self, url: str, token: str) -> str | None:
        """None when the client answered 2xx, else what went wrong."""
        body = urlencode({"logout_token": token}).encode()
        headers = {"content-type": "application/x-www-form-urlencoded", "user-agent": f"passwordless/{__version__}"}
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                response.read(1024)
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None
