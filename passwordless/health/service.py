"""Liveness, readiness and health: what they check, apart from how they answer over HTTP."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable
from dataclasses import dataclass

from passwordless import migrate
from passwordless.db import Database
from passwordless.lifecycle import Lifecycle
from passwordless.mail import queue

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


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
    except migrate.MigrationError:
        return Readiness(False, "migrations_diverged")
    except Exception:
        logger.exception("readiness_check_failed")
        return Readiness(False, "database_unavailable")
    return Readiness(False, "migrations_pending") if todo else Readiness(True)


async def health(db: Database) -> Health:
    database = await _check("database", db.read(_select_one)) if db.writer_alive() else "error"
    email_queue = await _check("email_queue", db.read(queue.count_unsent))
    return Health({"database": database, "email_queue": email_queue})


async def _check(name: str, probe: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except Exception:
        logger.exception("health_check_failed", extra={"check": name})
        return "error"
    return "ok"


def _select_one(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchone()
