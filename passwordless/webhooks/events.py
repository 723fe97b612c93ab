"""Events for the webhooks, queued inside the transaction of what caused them; the webhook worker
is woken once one is queued, as the mail worker is for email."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from passwordless.config.settings import WebhookSettings
from passwordless.platform.db.types import Connection
from passwordless.webhooks import store


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

    def queued(self) -> None:
        """Wake the worker. Called inside the write unit, which may run on the writer thread, hence
        thread-safe; and harmless before the COMMIT: the worker's next claim is a write of its own,
        which the engine commits after this one (DB README: writes commit in the order asked)."""
        if self._wake is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)


def emit(
    conn: Connection, outbox: Outbox, event_type: str, user: Subject, now: float, **extra: object
) -> None:
    """Queue `event_type` for every webhook that wants it; data carries the user's id and email."""
    if outbox.webhooks and store.enqueue(
        conn, outbox.webhooks, event_type, {"user_id": user.id, "email": user.email, **extra}, now
    ):
        outbox.queued()
