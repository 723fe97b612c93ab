"""The audit log (table audit_logs): who did what, from where, and whether it worked.
Never a token, code or secret."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field

from passwordless.crypto import new_id
from passwordless.db import delete_where


@dataclass(frozen=True)
class AuditEvent:
    event_type: str
    success: bool
    user_id: str | None = None
    email: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)


def record(conn: sqlite3.Connection, event: AuditEvent, now: float) -> None:
    conn.execute(
        "INSERT INTO audit_logs (id, created_at, event_type, user_id, email, ip, user_agent, success, details)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id(),
            int(now),
            event.event_type,
            event.user_id,
            event.email,
            event.ip,
            event.user_agent,
            int(event.success),
            json.dumps(dict(event.details), separators=(",", ":")),
        ),
    )


def prune(conn: sqlite3.Connection, before: float, limit: int, dry_run: bool = False) -> int:
    return delete_where(conn, "audit_logs", "created_at < ?", (int(before),), limit, dry_run)
