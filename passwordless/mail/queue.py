"""The durable email queue (table email_queue)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from passwordless.crypto import new_id


def count_unsent(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM email_queue WHERE status IN ('pending', 'sending')").fetchone()
    return int(row[0])


def enqueue(conn: sqlite3.Connection, to: str, subject: str, text: str, html: str, now: float) -> str:
    """Queue an email, in the caller's transaction: it is sent only if that transaction commits."""
    email_id = new_id()
    conn.execute(
        "INSERT INTO email_queue (id, to_address, subject, body_text, body_html, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (email_id, to, subject, text, html, int(now), int(now)),
    )
    return email_id


@dataclass(frozen=True)
class QueuedEmail:
    id: str
    to: str
    subject: str
    text: str
    html: str
    attempts: int  # including the one just claimed


def claim(conn: sqlite3.Connection, now: float, lease: float, limit: int) -> list[QueuedEmail]:
    """Lease due emails in one statement, so two workers never take the same row; a lease left
    behind by a crash expires and the row is taken again."""
    rows = conn.execute(
        "UPDATE email_queue SET status = 'sending', attempts = attempts + 1, last_attempt_at = ?,"
        " lease_expires_at = ? WHERE id IN (SELECT id FROM email_queue"
        "  WHERE (status = 'pending' AND next_attempt_at <= ?) OR (status = 'sending' AND lease_expires_at <= ?)"
        "  ORDER BY next_attempt_at LIMIT ?)"
        " RETURNING id, to_address, subject, body_text, body_html, attempts",
        (int(now), now + lease, now, now, limit),
    ).fetchall()
    return [QueuedEmail(r[0], r[1], r[2], r[3] or "", r[4] or "", r[5]) for r in rows]


def mark_sent(conn: sqlite3.Connection, email_id: str, now: float) -> None:
    """Sent: the bodies (they hold a sign-in link and code) are erased."""
    conn.execute(
        "UPDATE email_queue SET status = 'sent', sent_at = ?, lease_expires_at = NULL, last_error = NULL,"
        " body_text = NULL, body_html = NULL WHERE id = ?",
        (int(now), email_id),
    )


def mark_retry(conn: sqlite3.Connection, email_id: str, error: str, next_attempt_at: float) -> None:
    conn.execute(
        "UPDATE email_queue SET status = 'pending', last_error = ?, next_attempt_at = ?, lease_expires_at = NULL"
        " WHERE id = ?",
        (error[:500], int(next_attempt_at), email_id),
    )


def mark_dead(conn: sqlite3.Connection, email_id: str, error: str) -> None:
    conn.execute(
        "UPDATE email_queue SET status = 'dead', last_error = ?, lease_expires_at = NULL,"
        " body_text = NULL, body_html = NULL WHERE id = ?",
        (error[:500], email_id),
    )


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT min(CASE status WHEN 'pending' THEN next_attempt_at ELSE lease_expires_at END)"
        " FROM email_queue WHERE status IN ('pending', 'sending')"
    ).fetchone()
    return float(row[0]) if row[0] is not None else None
