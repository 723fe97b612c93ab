"""Events for the webhooks, queued inside the transaction of what caused them."""

from __future__ import annotations

import sqlite3

from passwordless.deps import Deps
from passwordless.users.store import User
from passwordless.webhooks import store


def emit(
    conn: sqlite3.Connection, deps: Deps, event_type: str, user: User, now: float, **extra: object
) -> None:
    """Queue `event_type` for every webhook that wants it; data carries the user's id and email."""
    if deps.config.webhooks:
        store.enqueue(conn, deps.config.webhooks, event_type, {"user_id": user.id, "email": user.email, **extra}, now)
