"""Prometheus metrics, in a registry of the app's own (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

EMAIL_STATUSES = ("pending", "sending", "sent", "dead")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.email_deliveries = Counter(
            "email_deliveries_total", "Email delivery attempts by result (sent, retry, dead).",
            ["result"], registry=self.registry,
        )
        self.email_queue_depth = Gauge(
            "email_queue_depth", "Emails in the queue by status.", ["status"], registry=self.registry
        )
        for result in ("sent", "retry", "dead"):
            self.email_deliveries.labels(result)
