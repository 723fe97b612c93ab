"""The audit log (table audit_logs): who did what, from where, and whether it worked.
Never a token, code or secret."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from passwordless.platform.crypto import new_id
from passwordless.platform.db.types import Connection
from passwordless.platform.sql import delete_where


@dataclass(frozen=True)
class AuditEvent:
    event_type: str
    success: bool
    user_id: str | None = None
    email: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)


def record(conn: Connection, event: AuditEvent, now: float) -> None:
    record_many(conn, [event], now)


def record_many(conn: Connection, events: Sequence[AuditEvent], now: float) -> None:
    """Insert audit rows, all in one statement."""
    rows = [
        (
            new_id(), int(now), e.event_type, e.user_id, e.email, e.ip, e.user_agent, int(e.success),
            json.dumps(dict(e.details), separators=(",", ":")),
        )
        for e in events
    ]
    conn.execute(
        "INSERT INTO audit_logs (id, created_at, event_type, user_id, email, ip, user_agent, success, details)"
        f" VALUES {', '.join(['(?, ?, ?, ?, ?, ?, ?, ?, ?)'] * len(rows))}",
        [value for row in rows for value in row],
    )


def prune(conn: Connection, before: float, limit: int, dry_run: bool = False) -> int:
    return delete_where(conn, "audit_logs", "created_at < ?", (int(before),), limit, dry_run)


@dataclass(frozen=True)
class AuditRow:
    id: str
    created_at: int
    event_type: str
    user_id: str | None
    email: str | None
    ip: str | None
    user_agent: str | None
    success: bool
    details: dict[str, object]


@dataclass(frozen=True)
class AuditFilter:
    event_type: str | None = None
    user_id: str | None = None
    success: bool | None = None
    since: int | None = None


def page(conn: Connection, f: AuditFilter, after: str | None, limit: int) -> list[AuditRow]:
    """Newest first; `after` is the last id of the previous page, so rows written meanwhile (newer,
    larger ids) never shift the pages that follow."""
    rows = conn.execute(
        "SELECT id, created_at, event_type, user_id, email, ip, user_agent, success, details FROM audit_logs"
        # A parameter tested only for NULL is cast: PostgreSQL must know every parameter's type.
        " WHERE (CAST(? AS TEXT) IS NULL OR event_type = ?) AND (CAST(? AS TEXT) IS NULL OR user_id = ?)"
        " AND (CAST(? AS INTEGER) IS NULL OR success = ?) AND (CAST(? AS BIGINT) IS NULL OR created_at >= ?)"
        " AND (CAST(? AS TEXT) IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        (
            f.event_type, f.event_type, f.user_id, f.user_id,
            None if f.success is None else int(f.success), None if f.success is None else int(f.success),
            f.since, f.since, after, after, limit,
        ),
    ).fetchall()
    return [
        AuditRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), json.loads(r[8] or "{}")) for r in rows
    ]
