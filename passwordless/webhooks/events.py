"""Events for the webhooks, queued inside the transaction of what caused them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Protocol

from passwordless.config.settings import WebhookSettings
from passwordless.webhooks import store


class Subject(Protocol):
    """Whom an event is about: a user record, as any feature holds it."""

    @property
    def id(self) -> str: ...

    @property
    def email(self) -> str: ...


def emit(
    conn: sqlite3.Connection, webhooks: Sequence[WebhookSettings], event_type: str, user: Subject, now: float,
    **extra: object,
) -> None:
    """Queue `event_type` for every webhook that wants it; data carries the user's id and email."""
    if webhooks:
        store.enqueue(conn, webhooks, event_type, {"user_id": user.id, "email": user.email, **extra}, now)
