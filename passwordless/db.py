"""One SQLite file. A writer thread owns the only writing connection and runs each write
transaction whole — one thread hop per transaction, not one per statement. Reader threads
hold read-only connections; each read runs in its own snapshot. A lookup by key (the session
behind a request) runs on the event loop's own read-only connection: no hop at all.

Group commit: when several write transactions are queued, the writer runs them back to back
inside one BEGIN IMMEDIATE … COMMIT; if one fails, the group runs again with each in its own
SAVEPOINT, so only that one rolls back. No caller hears "done" before the COMMIT that made
its work durable.

Store functions are plain functions taking a `sqlite3.Connection`; a service composes them
into one unit and hands it to `write` or `read`. A unit must not BEGIN or COMMIT itself.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

BUSY_TIMEOUT_MS = 5000
MAX_GROUP = 64  # write transactions committed together at most
_STOP = None

Unit = Callable[[sqlite3.Connection], Any]


class DatabaseClosed(Exception):
    """The database was closed before the work could run."""


class _Job:
    """A unit of work and the future its caller awaits. The future belongs to the caller's event
    loop: database threads settle it through `_deliver`, never directly."""

    __slots__ = ("unit", "loop", "future")

    def __init__(self, unit: Unit, loop: asyncio.AbstractEventLoop) -> None:
        self.unit = unit
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()


Outcome = tuple[_Job, bool, Any]  # the job, whether it succeeded, its result or exception


def _deliver(outcomes: list[Outcome]) -> None:
    """Hand outcomes to their event loops: one wake-up per loop for a whole committed group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, mine in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, mine)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _settle(outcomes: list[Outcome]) -> None:
    for job, ok, value in outcomes:
        if job.future.done():  # the caller was cancelled: the work was done, its outcome is unread
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


Jobs = queue.SimpleQueue[_Job | None]


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection with the project's pragmas; transactions are managed explicitly."""
    target = f"file:{path}?mode=ro" if read_only else str(path)
    conn = sqlite3.connect(target, uri=read_only, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: the pragmas below may wait on a lock
    if read_only:
        conn.execute("PRAGMA query_only=ON")
    else:
        _enable_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. Two processes opening a new file at once can make this fail at once with
    "database is locked" (SQLite does not wait for this lock), so it is tried again for a while."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class _Abandoned(Exception):
    """SQLite rolled back the whole transaction while a unit ran."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Reader(threading.Thread):
    """Runs read jobs, each in its own read transaction (one consistent snapshot)."""

    def __init__(self, name: str, conn: sqlite3.Connection, jobs: Jobs) -> None:
        super().__init__(name=name, daemon=True)
        self.conn, self.jobs = conn, jobs

    def run(self) -> None:
        try:
            while (job := self.jobs.get()) is not _STOP:
                try:
                    self.conn.execute("BEGIN")
                    try:
                        outcome: Outcome = (job, True, job.unit(self.conn))
                    finally:
                        self.conn.execute("COMMIT")
                except BaseException as exc:  # handed to the awaiting task
                    outcome = (job, False, exc)
                _deliver([outcome])
        finally:
            self.conn.close()


class _Writer(threading.Thread):
    """Runs write jobs in order, committing whatever is queued together (up to MAX_GROUP)."""

    def __init__(self, conn: sqlite3.Connection, jobs: Jobs) -> None:
        super().__init__(name="db-writer", daemon=True)
        self.conn, self.jobs = conn, jobs

    def run(self) -> None:
        try:
            stopping = False
            while not stopping:
                group, stopping = self._next_group()
                if group:
                    self._commit_group(group)
        finally:
            self.conn.close()

    def _next_group(self) -> tuple[list[_Job], bool]:
        first = self.jobs.get()
        if first is _STOP:
            return [], True
        group = [first]
        while len(group) < MAX_GROUP:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return group, True
            group.append(job)
        return group, False

    def _commit_group(self, group: list[_Job]) -> None:
        """Run the group in one transaction, each unit straight on the connection. Under load
        every statement costs this thread a turn at the interpreter lock behind the event loop,
        and a SAVEPOINT around each unit would be two more. If any unit raises, or the
        transaction fails, nothing of the group is kept and it runs again the careful way
        (_commit_isolated): a unit may therefore run twice, its first run leaving no trace."""
        conn = self.conn
        values: list[Any] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                values.append(job.unit(conn))
                if not conn.in_transaction:  # SQLite abandoned it: later units must not run outside it
                    raise _Abandoned(sqlite3.OperationalError("the transaction was rolled back"))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._commit_isolated(group)
            return
        _deliver([(job, True, value) for job, value in zip(group, values)])

    def _commit_isolated(self, group: list[_Job]) -> None:
        """Run the group in one transaction, each unit in its own SAVEPOINT, so one that raises
        rolls back alone. If the transaction as a whole fails (COMMIT fails, or a unit made
        SQLite abandon it) run each job again alone, so only the guilty one fails."""
        conn = self.conn
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                ok, value = self._run_unit(job)
                if not conn.in_transaction:
                    raise _Abandoned(value)
                outcomes.append((job, ok, value))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(group) > 1:
                for job in group:
                    self._commit_isolated([job])
            else:
                _deliver([(group[0], False, exc.cause if isinstance(exc, _Abandoned) else exc)])
            return
        _deliver(outcomes)

    def _run_unit(self, job: _Job) -> tuple[bool, Any]:
        conn = self.conn
        conn.execute("SAVEPOINT unit")
        try:
            result = job.unit(conn)
            conn.execute("RELEASE unit")
            return True, result
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
            return False, exc


class Database:
    """The writer and the readers of one SQLite file. Open with `Database.open(path)`."""

    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        self._write_jobs: Jobs = queue.SimpleQueue()
        self._read_jobs: Jobs = queue.SimpleQueue()
        self._writer = _Writer(connect(path), self._write_jobs)
        self._readers = [
            _Reader(f"db-reader-{i}", connect(path, read_only=True), self._read_jobs) for i in range(readers)
        ]
        self._inline = connect(path, read_only=True)  # used only on the event loop's thread: see lookup
        self._closed = False
        for thread in [self._writer, *self._readers]:
            thread.start()

    @classmethod
    async def open(cls, path: Path, readers: int = 2) -> Database:
        return await asyncio.to_thread(cls, path, readers)

    async def write(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, …)` as one write transaction: its changes commit together, or none do
        if it raises. Once queued it runs to completion even if the awaiting task is cancelled."""
        return await self._submit(self._write_jobs, lambda conn: fn(conn, *args, **kwargs))

    async def read(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, …)` on a read-only connection, in one consistent snapshot."""
        return await self._submit(self._read_jobs, lambda conn: fn(conn, *args, **kwargs))

    def lookup(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, …)` right here, on the event loop's thread: for a lookup by key, such as
        finding the session behind each authenticated request, where a hop to a reader thread
        costs several times the lookup itself. In WAL mode a reader never waits for the writer.
        Each statement sees the latest commit (no transaction spans them: statements that must
        agree belong in one statement, or in `read`). Anything that may scan goes to `read`."""
        if self._closed:
            raise DatabaseClosed("the database is closed")
        return fn(self._inline, *args, **kwargs)

    def writer_alive(self) -> bool:
        return not self._closed and self._writer.is_alive()

    async def _submit(self, jobs: Jobs, unit: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise DatabaseClosed("the database is closed")
        job = _Job(unit, asyncio.get_running_loop())
        jobs.put(job)
        # If the awaiting task is cancelled the job still runs; its outcome is then unread.
        result: T = await job.future
        return result

    async def close(self) -> None:
        """Finish queued work, checkpoint the WAL into the main file and close every connection."""
        if self._closed:
            return
        try:
            await self._submit(self._write_jobs, _nothing)  # runs after every write queued before it
        finally:
            self._closed = True
            self._write_jobs.put(_STOP)
            for _ in self._readers:
                self._read_jobs.put(_STOP)
            await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in [self._writer, *self._readers]:
            thread.join()
        self._inline.close()
        # With every reader gone the checkpoint can move the whole WAL into the main file.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


def _nothing(conn: sqlite3.Connection) -> None:
    """No PRAGMA optimize here: run when the tables were nearly empty (the first stops), its
    statistics told the planner the queue held one row, and it then scanned the whole queue
    on every claim once the queue had grown. The planner's defaults suit these tables."""


def delete_where(
    conn: sqlite3.Connection, table: str, where: str, params: tuple[Any, ...], limit: int, dry_run: bool
) -> int:
    """Delete up to `limit` rows matching `where` (or, with dry_run, count them all); how many.
    Batches keep each write transaction short, so sign-ins never wait long behind a prune."""
    if dry_run:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0])
    cursor = conn.execute(
        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} LIMIT ?)", (*params, limit)
    )
    return cursor.rowcount
