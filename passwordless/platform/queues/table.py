"""What the durable queues (tables email_queue and webhook_queue) share: leasing due rows,
handing them back, trying again later, giving up, and when to look again. Each table has id,
status ('pending' → 'sending' → 'sent' | 'dead'), attempts, last_error, last_attempt_at,
next_attempt_at and lease_expires_at, and an index <table>_due on (status, next_attempt_at).
`table` and `columns` are the stores' own constants, never input."""

from __future__ import annotations

from typing import Any

from passwordless.platform.db.types import Connection, dialect


def lease(conn: Connection, table: str, columns: str, now: float, lease_for: float, limit: int) -> list[Any]:
    """Lease due rows and return `columns` of each: those a crash left behind with an expired
    lease first, then the longest due. On SQLite the caller's write transaction (BEGIN IMMEDIATE)
    keeps other processes out meanwhile; on PostgreSQL each server locks the rows it takes and
    skips those another holds (FOR UPDATE SKIP LOCKED). Either way two workers never take the
    same row."""
    if dialect(conn) == "postgres":
        return conn.execute(
            f"UPDATE {table} SET status = 'sending', attempts = attempts + 1, last_attempt_at = ?,"
            f" lease_expires_at = ? WHERE id IN (SELECT id FROM {table}"
            " WHERE (status = 'sending' AND lease_expires_at <= ?) OR (status = 'pending' AND next_attempt_at <= ?)"
            " ORDER BY status = 'sending' DESC, next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)"
            f" RETURNING {columns}",
            (int(now), now + lease_for, now, now, limit),
        ).fetchall()
    # Two index searches, then one update by key: a single statement (with an OR, or the
    # searches as a subquery) sorted or copied the whole due part of the queue on every call.
    # INDEXED BY (the primary key's index is SQLite's sqlite_autoindex_<table>_1) keeps every
    # step on an index whatever the statistics say: from a near-empty queue they made even
    # `id IN (…)` scan it. One statement, not one per row: the write transaction, which holds
    # up every other write, stays short.
    ids = [r[0] for r in conn.execute(
        f"SELECT id FROM {table} INDEXED BY {table}_due WHERE status = 'sending' AND lease_expires_at <= ? LIMIT ?",
        (now, limit),
    )]
    if len(ids) < limit:
        ids += [r[0] for r in conn.execute(
            f"SELECT id FROM {table} INDEXED BY {table}_due"
            " WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (now, limit - len(ids)),
        )]
    if not ids:
        return []
    return conn.execute(
        f"UPDATE {table} INDEXED BY sqlite_autoindex_{table}_1 SET status = 'sending', attempts = attempts + 1,"
        f" last_attempt_at = ?, lease_expires_at = ? WHERE id IN ({', '.join('?' * len(ids))}) RETURNING {columns}",
        (int(now), now + lease_for, *ids),
    ).fetchall()


def release(conn: Connection, table: str, ids: list[str]) -> None:
    """Hand leased rows back (a send stopped by shutdown): due again at once, attempt not counted."""
    conn.executemany(
        f"UPDATE {table} SET status = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,"
        " lease_expires_at = NULL WHERE id = ? AND status = 'sending'",
        [(row_id,) for row_id in ids],
    )


def mark_retry(conn: Connection, table: str, row_id: str, error: str, next_attempt_at: float) -> None:
    conn.execute(
        f"UPDATE {table} SET status = 'pending', last_error = ?, next_attempt_at = ?, lease_expires_at = NULL"
        " WHERE id = ?",
        (error[:500], next_attempt_at, row_id),  # a fraction of a second matters for short backoffs
    )


def mark_dead(conn: Connection, table: str, row_id: str, error: str, max_attempts: int) -> None:
    """Dead, with attempts never above the limit (a lease retaken past it did not start one)."""
    conn.execute(
        f"UPDATE {table} SET status = 'dead', last_error = ?,"
        " attempts = CASE WHEN attempts > ? THEN ? ELSE attempts END, lease_expires_at = NULL WHERE id = ?",
        (error[:500], max_attempts, max_attempts, row_id),
    )


def next_due(conn: Connection, table: str) -> float | None:
    """When the next row falls due, or a lease runs out; None for an empty queue."""
    row = conn.execute(
        f"SELECT min(CASE status WHEN 'pending' THEN next_attempt_at ELSE lease_expires_at END)"
        f" FROM {table} WHERE status IN ('pending', 'sending')"
    ).fetchone()
    return float(row[0]) if row[0] is not None else None
