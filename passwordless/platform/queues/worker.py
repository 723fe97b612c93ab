"""What the mail and webhook workers share: lease due rows from a durable queue, work on up to
`concurrency` of them at once, wake at once when told new work is queued, and on stop let work
in flight finish for a while, then hand unfinished rows back to the queue.

Sending never waits for the database. The worker leases up to twice `concurrency` rows ahead
of the free slots, so a slot that frees starts the next row at once; outcomes are recorded
together, in the same write transaction as the next lease, once the rows leased ahead run
low (or nothing is left to send). One write transaction serves many sends."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from passwordless.platform.clock import Clock
from passwordless.platform.db import Database, concurrent
from passwordless.platform.db.types import Connection
from passwordless.platform.queues import table as queue_table

logger = logging.getLogger(__name__)

IDLE_SECONDS = 30.0  # the longest sleep with nothing due
# A row whose last allowed attempt never finished (its lease expired) is not tried beyond the limit:
# whatever stops a worker mid-send would otherwise stop every worker, for ever.
OUT_OF_ATTEMPTS = "the last attempt did not finish (its lease expired): no attempt left"
STOP_GRACE_SECONDS = 10.0

@dataclass(frozen=True)
class RetryPolicy:
    """How a queue retries: exponential backoff with jitter from `initial` to `ceiling` seconds, at
    most `max_attempts` attempts, and a lease (a row left leased by a crash is retaken after it)."""

    max_attempts: int
    initial: float
    ceiling: float
    lease: float


class Queued(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def attempts(self) -> int: ...  # including the one under way


Item = TypeVar("Item", bound=Queued)


@dataclass(frozen=True)
class Attempt(Generic[Item]):
    """What one delivery attempt came to; recorded in the worker's next round."""

    item: Item
    result: str  # "sent", "retry" or "dead"
    error: str = ""


def describe(exc: BaseException) -> str:
    """An exception as a queue row's last_error: its type, and its message if it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def backoff(attempts: int, initial: float, ceiling: float) -> float:
    """Exponential, capped, with jitter: between half and all of initial × 2^(attempts-1)."""
    longest = min(ceiling, initial * 2 ** (attempts - 1))
    return random.uniform(longest / 2, longest)


class QueueWorker(Generic[Item]):
    """Leases, retries and gives up the same way for every queue, each by its own RetryPolicy; a
    queue names its table and says how to claim, send and record."""

    name = "queue"
    table = ""  # the queue's table, as queue_table knows it

    def __init__(
        self, db: Database, clock: Clock, policy: RetryPolicy, concurrency: int, idle_seconds: float = IDLE_SECONDS
    ) -> None:
        self.db, self.clock, self.policy, self.concurrency = db, clock, policy, concurrency
        self.lease = policy.lease
        self.idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self._ahead: deque[tuple[Item, float]] = deque()  # leased, not started: (row, start it before)
        self._in_flight: dict[asyncio.Task[None], str] = {}
        self._results: list[Attempt[Item]] = []
        self._released: list[str] = []  # leased rows handed back unsent
        self._stopping = False
        self._running = False
        self._loop_done = asyncio.Event()

    # What a queue provides. All but deliver run inside the worker's write transaction.
    def claim(self, conn: Connection, now: float, limit: int) -> list[Item]:
        raise NotImplementedError

    async def deliver(self, item: Item) -> Attempt[Item]:
        raise NotImplementedError

    def record(self, conn: Connection, results: list[Attempt[Item]]) -> list[str]:
        """Store the attempts' results, together (few statements: each one lets the event loop
        take the interpreter lock from the writer); returns their metric labels."""
        raise NotImplementedError

    def recorded(self, labels: list[str]) -> None:
        """The results are committed (metrics)."""

    # What every queue shares.
    def failed(self, item: Item, error: str, final: bool = False) -> Attempt[Item]:
        """A failed attempt: tried again later, or dead if final or out of attempts."""
        dead = final or item.attempts >= self.policy.max_attempts
        return Attempt(item, "dead" if dead else "retry", error)

    def retry_later(self, conn: Connection, attempt: Attempt[Item], now: float) -> None:
        delay = backoff(attempt.item.attempts, self.policy.initial, self.policy.ceiling)
        queue_table.mark_retry(conn, self.table, attempt.item.id, attempt.error, now + delay)

    def give_up(self, conn: Connection, attempt: Attempt[Item]) -> None:
        queue_table.mark_dead(conn, self.table, attempt.item.id, attempt.error, self.policy.max_attempts)

    def next_due(self, conn: Connection) -> float | None:
        return queue_table.next_due(conn, self.table)

    def release(self, conn: Connection, ids: list[str]) -> None:
        queue_table.release(conn, self.table, ids)

    async def close(self) -> None:
        return None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self._running = True
        self.db.listen(f"passwordless_{self.table}", self.wake)  # rows queued on other servers
        try:
            await self._loop()
        finally:
            self._loop_done.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = await self._round() if self._results or self._released or self._wanted() > 0 else self.idle_seconds
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def _wanted(self) -> int:
        return 3 * self.concurrency - len(self._in_flight) - len(self._ahead)

    async def _round(self) -> float:
        """Record the finished outcomes and lease more rows in one transaction; start what the
        slots can take. Returns how long to sleep unless woken."""
        results, self._results = self._results, []
        released, self._released = self._released, []
        try:
            labels, items, due = await self.db.write(self._record_and_claim, results, released, self._wanted())
        except Exception:
            self._results[:0] = results  # kept for the next round: a sent row must not be sent again
            self._released[:0] = released
            logger.exception("queue_worker_failed", extra={"queue": self.name})
            return self.idle_seconds
        self.recorded(labels)
        start_by = self.clock() + self.lease / 2
        for item in items:
            if item.attempts > self.policy.max_attempts:  # retaken from a worker that died sending it
                self._results.append(Attempt(item, "dead", OUT_OF_ATTEMPTS))
                self._wake.set()
            else:
                self._ahead.append((item, start_by))
        self._start_ahead()
        return self.idle_seconds if due is None else min(self.idle_seconds, max(0.0, due - self.clock()))

    @concurrent  # the claim locks its own rows: servers claim at once (platform/db/postgres.py)
    def _record_and_claim(
        self, conn: Connection, results: list[Attempt[Item]], released: list[str], wanted: int
    ) -> tuple[list[str], list[Item], float | None]:
        labels = self.record(conn, results) if results else []
        if released:
            self.release(conn, released)
        items = self.claim(conn, self.clock(), wanted) if wanted > 0 and not self._stopping else []
        due = self.next_due(conn) if len(items) < wanted else None  # the queue is drained: when to look again
        return labels, items, due

    def _start_ahead(self) -> None:
        """Fill the free slots from the rows leased ahead. A row whose lease is half gone (the
        slots were stuck on a slow server) is handed back rather than sent late: another
        worker may retake it once the lease expires."""
        now = self.clock()
        while self._ahead and len(self._in_flight) < self.concurrency and not self._stopping:
            item, start_by = self._ahead.popleft()
            if now > start_by:
                self._released.append(item.id)
                continue
            task = asyncio.create_task(self._guarded(item))
            self._in_flight[task] = item.id
            task.add_done_callback(self._finished)

    async def _guarded(self, item: Item) -> None:
        try:
            result = await self.deliver(item)  # not appended in one expression: the list is swapped meanwhile
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in one delivery must not stop the others, nor retry it for ever
            logger.exception("queue_delivery_crashed", extra={"queue": self.name, "item_id": item.id})
            result = self.failed(item, describe(exc))
        self._results.append(result)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._start_ahead()  # the next leased row goes out now, not after a database round
        if len(self._ahead) < self.concurrency:
            self._wake.set()  # record the outcomes so far and lease more; until then, one round per many sends

    async def stop(self) -> None:
        """Stop leasing; let work in flight finish, record it, and hand the rest back."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._loop_done.wait()  # a lease under way hands its rows to _ahead first
        unsent = [item.id for item, _ in self._ahead]
        self._ahead.clear()
        tasks = list(self._in_flight)
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            unsent += [self._in_flight[t] for t in unfinished if t in self._in_flight]
            for task in unfinished:
                task.cancel()
        results, self._results = self._results, []
        unsent += self._released
        if results or unsent:
            labels, _, _ = await self.db.write(self._record_and_claim, results, unsent, 0)
            self.recorded(labels)
        await self.close()
