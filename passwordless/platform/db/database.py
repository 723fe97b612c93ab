"""One SQLite file, written on the event loop's own thread.

Writes: each `write` is one transaction. The ones asked for while the loop is busy are
committed together (group commit) in one BEGIN IMMEDIATE … COMMIT on the one writing
connection, right on the loop's thread: no thread hop and no wait for the interpreter lock,
which under load cost more than the SQL itself. The loop never waits for SQLite's lock: when
another process (a migration, an operator's sqlite3 shell) holds it, or a unit of the group
fails, the group goes to the writer thread. There it may wait the full busy timeout, and a
failing unit is rolled back alone (in its own SAVEPOINT) without failing the others. No caller
hears "done" before the COMMIT that made its work durable.

Checkpoints (copying the WAL into the main file, with an fsync) would stall the loop, so the
writer thread runs them in the background, often enough and completely enough that the WAL
starts over instead of growing (see CHECKPOINT_COMMITS and _Writer._checkpoint).

Reads: reader threads hold read-only connections; each read runs in its own snapshot. A
lookup by key (the session behind a request) runs on the loop's own read-only connection.

Store functions are plain functions taking a `sqlite3.Connection`; a service composes them
into one unit and hands it to `write` or `read`. A unit must not BEGIN or COMMIT itself, and
must not block: it runs on the event loop.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from passwordless.platform.db.connection import BUSY_TIMEOUT_MS, connect
from passwordless.platform.db.jobs import CHECKPOINT, STOP, DatabaseClosed, Groups, Job, Jobs, settle
from passwordless.platform.db.readers import Reader
from passwordless.platform.db.writer import CHECKPOINT_COMMITS, MAX_GROUP, Writer, commit_together

T = TypeVar("T")
P = ParamSpec("P")


class SqliteDatabase:
    """The writer and the readers of one SQLite file. Open with `SqliteDatabase.open(path)`."""

    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        # The one writing connection. The home loop uses it without waiting for any lock; the
        # writer thread, when the loop hands it a group, waits up to BUSY_TIMEOUT_MS.
        self._conn = connect(path)
        self._conn.execute("PRAGMA busy_timeout=0")
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the writer thread checkpoints, off the loop
        self._lock = threading.Lock()
        self._groups: Groups = queue.SimpleQueue()
        self._checkpointer = connect(path)  # checkpoints only, on the writer thread
        self._writer = Writer(self._conn, self._lock, self._groups, self._checkpointer)
        self._read_jobs: Jobs = queue.SimpleQueue()
        self._readers = [
            Reader(f"db-reader-{i}", connect(path, read_only=True), self._read_jobs) for i in range(readers)
        ]
        self._inline = connect(path, read_only=True)  # used only on the home loop's thread: see lookup
        self._home: asyncio.AbstractEventLoop | None = None
        self._pending: list[Job] = []
        self._handed_over = 0  # groups the home loop gave the writer thread, not yet committed
        self._commits = 0  # by the home loop, since it last asked for a checkpoint
        self._closed = False
        for thread in [self._writer, *self._readers]:
            thread.start()

    @classmethod
    async def open(cls, path: Path, readers: int = 2) -> SqliteDatabase:
        database = await asyncio.to_thread(cls, path, readers)
        database._home = asyncio.get_running_loop()
        return database

    async def write(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, …)` as one write transaction: its changes commit together, or none do
        if it raises. Once asked for it runs to completion even if the awaiting task is cancelled.
        On the loop that opened the database it runs on the loop's thread; from any other loop
        it runs on the writer thread.

        The unit contract (README.md here says why):
        - A unit may run more than once: when a group it shares fails, it runs again alone on
          the writer thread. Only its last run leaves a trace in the database, so anything it
          does outside SQL (appending to a list, calling a wake-up) must be idempotent.
        - It runs on the event loop's thread: it must not block (no I/O other than this
          connection, no sleep, no await) and should be short, as every request waits for it.
        - It must not BEGIN, COMMIT, ROLLBACK or change pragmas: the engine owns the transaction.
        - Its result is handed back only after the COMMIT that made its work durable."""
        if self._closed:
            raise DatabaseClosed("the database is closed")
        loop = asyncio.get_running_loop()
        job = Job(lambda conn: fn(conn, *args, **kwargs), loop)
        if loop is not self._home:
            self._groups.put([job])
        else:
            if not self._pending:
                loop.call_soon(self._flush)  # after every request handler already running has asked
            self._pending.append(job)
        # If the awaiting task is cancelled the job still runs; its outcome is then unread.
        result: T = await job.future
        return result

    def _flush(self) -> None:
        """Commit the writes asked for on the home loop since the last flush, as one group."""
        if self._handed_over:  # first come, first committed: _handed_over_done calls again
            return
        group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        if not group:  # close() took them
            return
        if self._closed:
            settle([(job, False, DatabaseClosed("the database is closed")) for job in group])
            return
        if not self._lock.acquire(blocking=False):  # the writer thread holds it (a checkpoint, say)
            self._hand_over(group)
            return
        try:
            values = commit_together(self._conn, group)
        except BaseException:  # another process holds the lock, or a unit failed: the thread sorts it out
            self._hand_over(group)
            return
        finally:
            self._lock.release()
        settle([(job, True, value) for job, value in zip(group, values)])
        self._commits += 1
        writer = self._writer
        if writer.checkpoint_asked:
            return
        if self._commits >= CHECKPOINT_COMMITS or writer.checkpoint_due():
            self._commits, writer.checkpoint_asked = 0, True
            self._groups.put(CHECKPOINT)

    def _hand_over(self, group: list[Job]) -> None:
        """Give a group to the writer thread. The loop's next writes wait until the thread has
        committed it, so writes commit in the order asked, then go on committing on the loop
        (following it to the thread instead made a convoy there under load)."""
        self._handed_over += 1
        marker = Job(_nothing, group[0].loop)
        marker.future.add_done_callback(self._handed_over_done)
        self._groups.put([*group, marker])

    def _handed_over_done(self, future: asyncio.Future[Any]) -> None:
        self._handed_over -= 1
        if not self._handed_over and self._pending:
            future.get_loop().call_soon(self._flush)

    async def read(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, …)` on a read-only connection, in one consistent snapshot."""
        if self._closed:
            raise DatabaseClosed("the database is closed")
        job = Job(lambda conn: fn(conn, *args, **kwargs), asyncio.get_running_loop())
        self._read_jobs.put(job)
        result: T = await job.future
        return result

    async def lookup(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, …)` right here, on the event loop's thread: for a lookup by key, such as
        finding the session behind each authenticated request, where a hop to a reader thread
        costs several times the lookup itself. In WAL mode a reader never waits for the writer.
        Each statement sees the latest commit (no transaction spans them: statements that must
        agree belong in one statement, or in `read`). Anything that may scan goes to `read`."""
        if self._closed:
            raise DatabaseClosed("the database is closed")
        return fn(self._inline, *args, **kwargs)

    def listen(self, channel: str, wake: Callable[[], None]) -> None:
        """Nothing to hear: one server per file, and the unit that queues a row wakes its worker."""

    def writer_alive(self) -> bool:
        return not self._closed and self._writer.is_alive()

    async def close(self) -> None:
        """Finish the writes asked for, checkpoint the WAL into the main file and close every
        connection."""
        if self._closed:
            return
        try:
            if self._pending and asyncio.get_running_loop() is self._home:
                pending, self._pending = self._pending, []
                self._groups.put(pending)  # after every group handed over before them
            done = Job(_nothing, asyncio.get_running_loop())
            self._groups.put([done])  # runs after every group handed to the thread before it
            await done.future
        finally:
            self._closed = True
            self._groups.put(STOP)
            for _ in self._readers:
                self._read_jobs.put(STOP)
            await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in [self._writer, *self._readers]:
            thread.join()
        for conn in (self._conn, self._checkpointer, self._inline):
            conn.close()
        # With every reader gone the checkpoint can move the whole WAL into the main file.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


def _nothing(conn: sqlite3.Connection) -> None:
    """Marks a place in the writer thread's queue: it commits once everything before it has.
    (No PRAGMA optimize at close either: run when the tables were nearly empty, its statistics
    told the planner the queue held one row, and it then scanned the whole queue on every claim
    once the queue had grown. The planner's defaults suit these tables.)"""
