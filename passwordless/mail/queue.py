"""The durable email queue (table email_queue)."""

from __future__ import annotations

from dataclasses import dataclass

from passwordless.platform.crypto import new_id
from passwordless.platform.db.types import Connection, notify
from passwordless.platform.queues import table as queue_table
from passwordless.platform.sql import delete_where


def enqueue(conn: Connection, to: str, subject: str, text: str, html: str, now: float) -> str:
    """Queue an email, in the caller's transaction: it is sent only if that transaction commits."""
    email_id = new_id()
    conn.execute(
        "INSERT INTO email_queue (id, to_address, subject, body_text, body_html, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (email_id, to, subject, text, html, int(now), int(now)),
    )
    notify(conn, "passwordless_email_queue")  # any server's mail worker may send it (the caller wakes ours)
    return email_id


@dataclass(frozen=True)
class QueuedEmail:
    id: str
    to: str
    subject: str
    text: str
    html: str
    attempts: int  # including the one just claimed


def claim(conn: Connection, now: float, lease: float, limit: int) -> list[QueuedEmail]:
    """Lease due emails (queue_table.lease): two workers never take the same row, and a lease
    left behind by a crash expires and the row is taken again."""
    columns = "id, to_address, subject, body_text, body_html, attempts"
    rows = queue_table.lease(conn, "email_queue", columns, now, lease, limit)
    return [QueuedEmail(r[0], r[1], r[2], r[3] or "", r[4] or "", r[5]) for r in rows]


def mark_sent(conn: Connection, email_ids: list[str], now: float) -> None:
    """Sent: the bodies (they hold a sign-in link and code) are erased. One statement for all."""
    conn.execute(
        "UPDATE email_queue INDEXED BY sqlite_autoindex_email_queue_1 SET status = 'sent', sent_at = ?,"
        " lease_expires_at = NULL, last_error = NULL, body_text = NULL, body_html = NULL"
        f" WHERE id IN ({', '.join('?' * len(email_ids))})",
        (int(now), *email_ids),
    )


def depth(conn: Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM email_queue GROUP BY status").fetchall()
    return {row[0]: row[1] for row in rows}


def oldest_unsent(conn: Connection) -> int | None:
    """When the oldest email still waiting to go out was queued."""
    row = conn.execute("SELECT min(created_at) FROM email_queue WHERE status IN ('pending', 'sending')").fetchone()
    return int(row[0]) if row[0] is not None else None


def retry(conn: Connection, email_id: str, now: float) -> bool:
    """A dead email goes back to pending, due now, with a fresh count of attempts."""
    cursor = conn.execute(
        "UPDATE email_queue SET status = 'pending', attempts = 0, next_attempt_at = ?, last_error = NULL"
        " WHERE id = ? AND status = 'dead' AND body_text IS NOT NULL",
        (int(now), email_id),
    )
    if cursor.rowcount > 0:
        notify(conn, "passwordless_email_queue")
    return cursor.rowcount > 0


def prune(conn: Connection, before: float, limit: int, dry_run: bool = False) -> int:
    """Sent and dead rows finished before a moment (up to `limit` at a time)."""
    where = "status IN ('sent', 'dead') AND coalesce(sent_at, last_attempt_at, created_at) < ?"
    return delete_where(conn, "email_queue", where, (int(before),), limit, dry_run)


@dataclass(frozen=True)
class EmailRow:
    id: str
    to: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created_at: int
    next_attempt_at: float
    sent_at: int | None


def page(conn: Connection, status: str | None, after: str | None, limit: int) -> list[EmailRow]:
    """Newest first, without bodies (they hold sign-in links and codes)."""
    rows = conn.execute(
        "SELECT id, to_address, subject, status, attempts, last_error, created_at, next_attempt_at, sent_at"
        " FROM email_queue WHERE (CAST(? AS TEXT) IS NULL OR status = ?)"  # typed NULLs, for PostgreSQL
        " AND (CAST(? AS TEXT) IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        (status, status, after, after, limit),
    ).fetchall()
    return [EmailRow(*r) for r in rows]


def status_of(conn: Connection, email_id: str) -> str | None:
    row = conn.execute("SELECT status FROM email_queue WHERE id = ?", (email_id,)).fetchone()
    return str(row[0]) if row else None
