"""Webhook deliveries (table webhook_queue): queued in the transaction of the event itself."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from passwordless.config import WebhookSettings
from passwordless.db import delete_where


@dataclass(frozen=True)
class Delivery:
    id: str
    url: str
    payload: str
    attempts: int  # including the one just claimed
    hook_key: str


def hook_key(hook: WebhookSettings) -> str:
    """Names a configured webhook (its URL and secret) without storing the secret."""
    return hashlib.sha256(f"{hook.url}\n{hook.secret}".encode()).hexdigest()[:32]


def enqueue(
    conn: sqlite3.Connection, hooks: Sequence[WebhookSettings], event_type: str, data: Mapping[str, object],
    now: float,
) -> int:
    """One delivery per webhook that wants this event; returns how many were queued."""
    moment = datetime.fromtimestamp(now, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = json.dumps({"type": event_type, "timestamp": moment, "data": dict(data)}, separators=(",", ":"))
    queued = 0
    for hook in hooks:
        if hook.events and event_type not in hook.events:
            continue
        conn.execute(
            "INSERT INTO webhook_queue (id, url, hook_key, event_type, payload, next_attempt_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (f"msg_{uuid.uuid4().hex}", hook.url, hook_key(hook), event_type, body, int(now), int(now)),
        )
        queued += 1
    return queued


def claim(conn: sqlite3.Connection, now: float, lease: float, limit: int) -> list[Delivery]:
    """Lease due rows: those a crash left behind with an expired lease first, then the
    longest due."""
    # Two index searches, then one update by key: a single statement (with an OR, or the
    # searches as a subquery) sorted or copied the whole due part of the queue on every call.
    # INDEXED BY (the primary key's index is SQLite's sqlite_autoindex_<table>_1) keeps every
    # step on an index whatever the statistics say: from a near-empty queue they made even
    # `id IN (…)` scan it. One statement, not one per row: each statement lets the event loop
    # take the interpreter lock from the writer thread. The caller's write transaction
    # (BEGIN IMMEDIATE) keeps other processes out meanwhile.
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM webhook_queue INDEXED BY webhook_queue_due WHERE status = 'sending' AND lease_expires_at <= ?"
        " LIMIT ?",
        (now, limit),
    )]
    if len(ids) < limit:
        ids += [r[0] for r in conn.execute(
            "SELECT id FROM webhook_queue INDEXED BY webhook_queue_due"
            " WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (now, limit - len(ids)),
        )]
    if not ids:
        return []
    rows = conn.execute(
        "UPDATE webhook_queue INDEXED BY sqlite_autoindex_webhook_queue_1 SET status = 'sending', attempts = attempts + 1,"
        f" last_attempt_at = ?, lease_expires_at = ? WHERE id IN ({', '.join('?' * len(ids))})"
        " RETURNING id, url, payload, attempts, hook_key",
        (int(now), now + lease, *ids),
    ).fetchall()
    return [Delivery(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def mark_sent(conn: sqlite3.Connection, delivery_id: str, now: float) -> None:
    conn.execute(
        "UPDATE webhook_queue SET status = 'sent', delivered_at = ?, lease_expires_at = NULL, last_error = NULL"
        " WHERE id = ?",
        (int(now), delivery_id),
    )


def mark_retry(conn: sqlite3.Connection, delivery_id: str, error: str, next_attempt_at: float) -> None:
    conn.execute(
        "UPDATE webhook_queue SET status = 'pending', last_error = ?, next_attempt_at = ?, lease_expires_at = NULL"
        " WHERE id = ?",
        (error[:500], next_attempt_at, delivery_id),
    )


def mark_dead(conn: sqlite3.Connection, delivery_id: str, error: str) -> None:
    conn.execute(
        "UPDATE webhook_queue SET status = 'dead', last_error = ?, lease_expires_at = NULL WHERE id = ?",
        (error[:500], delivery_id),
    )


def release(conn: sqlite3.Connection, delivery_ids: list[str]) -> None:
    conn.executemany(
        "UPDATE webhook_queue SET status = 'pending', attempts = max(attempts - 1, 0), lease_expires_at = NULL"
        " WHERE id = ? AND status = 'sending'",
        [(i,) for i in delivery_ids],
    )


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT min(CASE status WHEN 'pending' THEN next_attempt_at ELSE lease_expires_at END)"
        " FROM webhook_queue WHERE status IN ('pending', 'sending')"
    ).fetchone()
    return float(row[0]) if row[0] is not None else None


def prune(conn: sqlite3.Connection, before: float, limit: int, dry_run: bool = False) -> int:
    where = "status IN ('sent', 'dead') AND coalesce(delivered_at, last_attempt_at, created_at) < ?"
    return delete_where(conn, "webhook_queue", where, (int(before),), limit, dry_run)
