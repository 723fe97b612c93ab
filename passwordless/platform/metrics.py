"""Prometheus metrics, in a registry of the app's own (no module-level state). Labels are
bounded: routes are templates ("/auth/sessions/{id}"), never raw paths."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

EMAIL_STATUSES = ("pending", "sending", "sent", "dead")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "http_requests_total", "HTTP requests by method, route template and status.",
            ["method", "route", "status"], registry=r,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request.",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.auth_attempts = Counter(
            "auth_attempts_total", "Sign-in and refresh attempts by method and outcome.",
            ["method", "status"], registry=r,
        )
        self.rate_limit_hits = Counter(
            "rate_limit_hits_total", "Requests refused by a rate limit, by limit.", ["scope"], registry=r
        )
        self.email_deliveries = Counter(
            "email_deliveries_total", "Email delivery attempts by result (sent, retry, dead).", ["result"], registry=r
        )
        self.email_queue_depth = Gauge("email_queue_depth", "Emails in the queue by status.", ["status"], registry=r)
        self.active_sessions = Gauge("active_sessions", "Sessions neither expired nor revoked.", registry=r)
        self.webhook_deliveries = Counter(
            "webhook_deliveries_total", "Webhook delivery attempts by result (sent, retry, dead).",
            ["result"], registry=r,
        )
        self.oidc_requests = Counter(
            "oidc_requests_total", "OpenID Connect provider requests by endpoint and result (OIDC.md).",
            ["endpoint", "result"], registry=r,
        )
        self.oidc_backchannel_deliveries = Counter(
            "oidc_backchannel_deliveries_total", "Back-channel logout delivery attempts by result (sent, retry, dead).",
            ["result"], registry=r,
        )
        for endpoint in ("authorize", "token", "userinfo", "revoke", "introspect", "logout"):
            self.oidc_requests.labels(endpoint, "success")
        for result in ("sent", "retry", "dead"):
            self.email_deliveries.labels(result)
            self.webhook_deliveries.labels(result)
            self.oidc_backchannel_deliveries.labels(result)
        for method in ("magic_link", "code", "passkey", "refresh"):
            for status in ("success", "failure"):
                self.auth_attempts.labels(method, status)

    def attempt(self, method: str, success: bool) -> None:
        self.auth_attempts.labels(method, "success" if success else "failure").inc()
