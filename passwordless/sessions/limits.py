"""Rate limits as the services apply them: per client IP (in memory) with a 429 that says when to
come back, audited as rate_limited.

A flood of refusals must not write without bound: each refusal is counted in the metrics, but only
the first per limit and key in a window leaves an audit row. The "already audited" memory is the
in-memory limiter (bounded, amortised O(1)), not the database: asking the database would cost a read
per refusal, the very load the limit sheds; a restart forgets it, which costs at most one more row."""

from __future__ import annotations

from dataclasses import dataclass

from passwordless.config.settings import RateLimitSettings
from passwordless.platform import audit
from passwordless.platform.client import Client
from passwordless.platform.clock import Clock
from passwordless.platform.db import Database
from passwordless.platform.errors import ApiError
from passwordless.platform.metrics import Metrics
from passwordless.platform.ratelimit import RateLimiter, client_key


@dataclass(frozen=True)
class Limits:
    """The per-IP limits every sign-in method applies (one limiter per process)."""

    settings: RateLimitSettings
    limiter: RateLimiter
    metrics: Metrics
    db: Database
    clock: Clock


def rate_limited(retry_after: float) -> ApiError:
    seconds = max(1, int(retry_after + 0.999))
    return ApiError(
        429, "rate_limited", f"Too many attempts. Try again in {seconds} seconds.", {"retry-after": str(seconds)}
    )


async def check_ip_limit(deps: Limits, scope: str, client: Client) -> None:
    """The per-IP limit of a scope: "magic_link", "verify" (links and codes) or "passkey" (sign-in
    options and verify share one budget)."""
    limits = deps.settings
    if not limits.enabled:
        return
    rate = {"magic_link": limits.magic_link_per_ip, "passkey": limits.passkey_per_ip}.get(scope, limits.verify_per_ip)
    now = deps.clock()
    wait = deps.limiter.hit(f"{scope}:{client_key(client.ip)}", rate, now)
    if wait is not None:
        deps.metrics.rate_limit_hits.labels(f"{scope}_per_ip").inc()
        if first_refusal(deps, f"{scope}_per_ip", client_key(client.ip), rate.per_seconds, now):
            event = audit.AuditEvent(
                "rate_limited", False, ip=client.ip, user_agent=client.user_agent, details={"scope": f"{scope}_per_ip"}
            )
            await deps.db.write(audit.record, event, now)
        raise rate_limited(wait)


def first_refusal(deps: Limits, limit: str, key: str, window: float, now: float) -> bool:
    """True for the first refusal by `limit` of `key` in a window: the one to audit."""
    return deps.limiter.first_in_window(f"audited:{limit}:{key}", window, now)
