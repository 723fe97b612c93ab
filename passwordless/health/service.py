"""Liveness, readiness and health: what they check, apart from how they answer over HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from passwordless.config.settings import MetricsSettings
from passwordless.mail import queue
from passwordless.platform import migrate
from passwordless.platform.clock import Clock
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.lifecycle import Lifecycle
from passwordless.platform.metrics import EMAIL_STATUSES, Metrics
from passwordless.sessions import store as sessions

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class HealthDeps:
    """What the health endpoints and /metrics need, built in app.py."""

    db: Database
    clock: Clock
    lifecycle: Lifecycle
    migrations: tuple[migrate.Migration, ...]  # what this version knows, to tell whether any is pending
    metrics: Metrics
    metrics_settings: MetricsSettings
    magic_link_ttl: float  # an email older than this in the queue makes /health unhealthy


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str | None = None


@dataclass(frozen=True)
class Health:
    checks: dict[str, str]

    @property
    def healthy(self) -> bool:
        return all(result == "ok" for result in self.checks.values())


async def readiness(db: Database, lifecycle: Lifecycle, known: tuple[migrate.Migration, ...]) -> Readiness:
    if lifecycle.draining:
        return Readiness(False, "draining")
    if not db.writer_alive():
        return Readiness(False, "database_unavailable")
    try:
        todo = await asyncio.wait_for(db.read(migrate.pending, known), CHECK_TIMEOUT_SECONDS)
    except migrate.DatabaseAhead:
        # A rolling update: the new version migrated the database while this one still serves.
        # Migrations keep the version before them working (docs/upgrading.md), so it stays ready
        # until it is replaced; it would refuse to start again on this database.
        return Readiness(True)
    except migrate.MigrationError:
        return Readiness(False, "migrations_diverged")
    except Exception:
        logger.exception("readiness_check_failed")
        return Readiness(False, "database_unavailable")
    return Readiness(False, "migrations_pending") if todo else Readiness(True)


async def health(db: Database, now: float, email_backlog_limit: float) -> Health:
    """database: reads answer and the writer runs. email_queue: "degraded" while an email has
    waited longer than `email_backlog_limit` seconds (its sign-in link has expired by then)."""
    database = str(await _check("database", db.read(_select_one))) if db.writer_alive() else "error"
    oldest = await _check("email_queue", db.read(queue.oldest_unsent))
    if oldest == "error":
        email_queue = "error"
    else:
        late = isinstance(oldest, int) and now - oldest > email_backlog_limit
        email_queue = "degraded" if late else "ok"
    return Health({"database": database, "email_queue": email_queue})


async def _check(name: str, probe: Awaitable[object]) -> object:
    try:
        return await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except Exception:
        logger.exception("health_check_failed", extra={"check": name})
        return "error"


def _select_one(conn: Connection) -> str:
    conn.execute("SELECT 1").fetchone()
    return "ok"


async def refresh_gauges(db: Database, metrics: Metrics, now: float) -> None:
    """The gauges read at scrape time: email_queue_depth{status} and active_sessions."""
    counts = await db.read(queue.depth)
    for status in EMAIL_STATUSES:
        metrics.email_queue_depth.labels(status).set(counts.get(status, 0))
    metrics.active_sessions.set(await db.read(sessions.count_active, now))
