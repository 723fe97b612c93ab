"""Events for the webhooks, queued inside the transaction of what caused them; the webhook worker
is woken once one is queued, as the mail worker is for email."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from passwordless.config.settings import WebhookSettings
from passwordless.platform.db.types import Connection, after_commit, notify
from passwordless.webhooks import store

QUEUE_CHANNEL = "passwordless_webhook_queue"  # what the worker listens on (QueueWorker: passwordless_<table>)


class Subject(Protocol):
    """Whom an event is about: a user record, as any feature holds it."""

    @property
    def id(self) -> str: ...

    @property
    def email(self) -> str: ...


class Outbox:
    """The configured webhooks, and the worker to wake when an event is queued for them."""

    def __init__(self, webhooks: Sequence[WebhookSettings]) -> None:
        self.webhooks = tuple(webhooks)
        self._wake: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake_with(self, wake: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
        self._wake, self._loop = wake, loop

    def queued(self, conn: Connection) -> None:
        """Wake this server's worker once the unit that queued the event commits (the unit may run
        on a database thread, hence thread-safe), and every other server's through the database."""
        notify(conn, QUEUE_CHANNEL)
        after_commit(conn, self._wake_worker)

    def _wake_worker(self) -> None:
        if self._wake is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)


def emit(
    conn: Connection, outbox: Outbox, event_type: str, user: Subject, now: float, **extra: object
) -> None:
    """Queue `event_type` for every webhook that wants it; data carries the user's id and email."""
    if outbox.webhooks and store.enqueue(
        conn, outbox.webhooks, event_type, {"user_id": user.id, "email": user.email, **extra}, now
    ):
        outbox.queued(conn)
