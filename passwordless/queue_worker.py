"""What the mail and webhook workers share: lease due rows from a durable queue, work on up to
`concurrency` of them at once, wake at once when told new work is queued, and on stop let work
in flight finish for a while, then hand unfinished rows back to the queue."""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, Protocol, TypeVar

from passwordless.db import Database
from passwordless.deps import Clock

logger = logging.getLogger(__name__)

IDLE_SECONDS = 30.0  # the longest sleep with nothing due
STOP_GRACE_SECONDS = 10.0


class Queued(Protocol):
    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=Queued)


class QueueWorker(Generic[Item]):
    name = "queue"

    def __init__(self, db: Database, clock: Clock, concurrency: int, idle_seconds: float = IDLE_SECONDS) -> None:
        self.db, self.clock, self.concurrency, self.idle_seconds = db, clock, concurrency, idle_seconds
        self._wake = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], str] = {}
        self._stopping = False
        self._running = False
        self._loop_done = asyncio.Event()

    # What a queue provides.
    async def claim(self, free: int) -> list[Item]:
        raise NotImplementedError

    async def next_due(self) -> float | None:
        raise NotImplementedError

    async def release(self, ids: list[str]) -> None:
        raise NotImplementedError

    async def deliver(self, item: Item) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self._running = True
        try:
            await self._loop()
        finally:
            self._loop_done.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = self.idle_seconds
            try:
                free = self.concurrency - len(self._in_flight)
                if free > 0:
                    for item in await self.claim(free):
                        task = asyncio.create_task(self._guarded(item))
                        self._in_flight[task] = item.id
                        task.add_done_callback(self._finished)
                if len(self._in_flight) < self.concurrency:
                    due = await self.next_due()
                    if due is not None:
                        delay = min(self.idle_seconds, max(0.0, due - self.clock()))
            except Exception:
                logger.exception("queue_worker_failed", extra={"queue": self.name})
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _guarded(self, item: Item) -> None:
        try:
            await self.deliver(item)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in one delivery must not stop the others; the lease retakes it
            logger.exception("queue_delivery_crashed", extra={"queue": self.name, "item_id": item.id})

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wake.set()  # a slot is free

    async def stop(self) -> None:
        """Stop claiming; let work in flight finish, then release what is left to the queue."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._loop_done.wait()  # a claim under way hands its rows to _in_flight first
        tasks = list(self._in_flight)
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            ids = [self._in_flight[t] for t in unfinished if t in self._in_flight]
            for task in unfinished:
                task.cancel()
            if ids:
                await self.release(ids)
        await self.close()
