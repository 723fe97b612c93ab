"""Webhook deliveries (table webhook_queue): queued in the transaction of the event itself."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from passwordless.config.settings import WebhookSettings
from passwordless.platform.crypto import new_id
from passwordless.platform.db.types import Connection
from passwordless.platform.queues import table as queue_table
from passwordless.platform.sql import delete_where


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
    conn: Connection, hooks: Sequence[WebhookSettings], event_type: str, data: Mapping[str, object],
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
            (f"msg_{new_id().replace('-', '')}", hook.url, hook_key(hook), event_type, body, int(now), int(now)),
        )
        queued += 1
    return queued


def claim(conn: Connection, now: float, lease: float, limit: int) -> list[Delivery]:
    """Lease due deliveries (queue_table.lease)."""
    rows = queue_table.lease(conn, "webhook_queue", "id, url, payload, attempts, hook_key", now, lease, limit)
    return [Delivery(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def mark_sent(conn: Connection, delivery_id: str, now: float) -> None:
    conn.execute(
        "UPDATE webhook_queue SET status = 'sent', delivered_at = ?, lease_expires_at = NULL, last_error = NULL"
        " WHERE id = ?",
        (int(now), delivery_id),
    )


def prune(conn: Connection, before: float, limit: int, dry_run: bool = False) -> int:
    where = "status IN ('sent', 'dead') AND coalesce(delivered_at, last_attempt_at, created_at) < ?"
    return delete_where(conn, "webhook_queue", where, (int(before),), limit, dry_run)
