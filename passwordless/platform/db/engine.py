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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

BUSY_TIMEOUT_MS = 5000
MAX_GROUP = 64  # write transactions committed together at most
# While the loop commits, the writer thread checkpoints every CHECKPOINT_SECONDS, or after
# CHECKPOINT_COMMITS commits if that comes first (each commit writes a few pages at least).
CHECKPOINT_SECONDS = 0.5
CHECKPOINT_COMMITS = 250
RESET_FRAMES = 4000  # a WAL this long (16 MB of 4 KB pages) is wholly copied and started over
_STOP = None
_CHECKPOINT = "checkpoint"

Unit = Callable[[sqlite3.Connection], Any]


class DatabaseClosed(Exception):
    """The database was closed before the work could run."""


class _Job:
    """A unit of work and the future its caller awaits. The future belongs to the caller's event
    loop: database threads settle it through `_deliver`, never directly (the loop's own flush
    settles it in place)."""

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
Groups = queue.SimpleQueue[list[_Job] | str | None]  # groups of write jobs, _CHECKPOINT or _STOP


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


def _commit_together(conn: sqlite3.Connection, group: list[_Job]) -> list[Any]:
    """Run the group in one transaction, each unit straight on the connection (a SAVEPOINT
    around each would be two more statements per unit); the units' results. If any unit raises,
    or the transaction fails, nothing of the group is kept and the exception propagates."""
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
        raise
    return values


class _Writer(threading.Thread):
    """Commits the write groups the event loop could not commit itself, in order, merging
    whatever is queued (up to MAX_GROUP jobs); checkpoints the WAL when asked. It shares the
    one writing connection with the loop: whoever holds `lock` uses it. Checkpoints use a
    connection of their own, so writes go on while most of the WAL is copied."""

    def __init__(
        self, conn: sqlite3.Connection, lock: threading.Lock, groups: Groups, checkpointer: sqlite3.Connection
    ) -> None:
        super().__init__(name="db-writer", daemon=True)
        self.conn, self.lock, self.groups, self.checkpointer = conn, lock, groups, checkpointer
        self.checkpoint_asked = False  # set by the loop, cleared here: one checkpoint queued at most
        self.last_checkpoint = time.monotonic()

    def run(self) -> None:
        stopping = False
        while not stopping:
            group, stopping = self._next_group()
            if group:
                with self.lock:
                    self._commit_waiting(group)
                if self.checkpoint_due():
                    self._checkpoint()

    def _next_group(self) -> tuple[list[_Job], bool]:
        group: list[_Job] = []
        item = self.groups.get()
        while True:
            if item is _STOP:
                return group, True
            if item == _CHECKPOINT:
                self._checkpoint()
            elif isinstance(item, list):
                group += item
            if len(group) >= MAX_GROUP:
                return group, False
            try:
                item = self.groups.get_nowait()
            except queue.Empty:
                return group, False

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self.last_checkpoint >= CHECKPOINT_SECONDS

    def _checkpoint(self) -> None:
        """Copy the WAL into the main file while the loop goes on writing. Such a checkpoint
        never completes under steady writes (each adds frames while it copies), and a WAL that
        is never wholly copied never starts over: it grew to hundreds of MB, making every read
        and write slower. So once the WAL holds RESET_FRAMES, the rest is copied with `lock`
        held: no write runs, the checkpoint completes and the next write starts the WAL over.
        Writes wait meanwhile (fsyncs included), so this is done only that rarely."""
        self.checkpoint_asked, self.last_checkpoint = False, time.monotonic()
        try:
            _, frames, _ = self.checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames >= RESET_FRAMES:
                with self.lock:
                    self.checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # another connection is checkpointing: the next time will do
            pass

    def _commit_waiting(self, group: list[_Job]) -> None:
        """Commit the group, waiting up to the busy timeout for another process's lock. If any
        unit raises, or the transaction fails, it runs again the careful way (_commit_isolated):
        a unit may therefore run more than once, only its last run leaving a trace."""
        self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            try:
                values = _commit_together(self.conn, group)
            except BaseException:
                self._commit_isolated(group)
                return
            _deliver([(job, True, value) for job, value in zip(group, values)])
        finally:
            self.conn.execute("PRAGMA busy_timeout=0")

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
        # The one writing connection. The home loop uses it without waiting for any lock; the
        # writer thread, when the loop hands it a group, waits up to BUSY_TIMEOUT_MS.
        self._conn = connect(path)
        self._conn.execute("PRAGMA busy_timeout=0")
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the writer thread checkpoints, off the loop
        self._lock = threading.Lock()
        self._groups: Groups = queue.SimpleQueue()
        self._checkpointer = connect(path)  # checkpoints only, on the writer thread
        self._writer = _Writer(self._conn, self._lock, self._groups, self._checkpointer)
        self._read_jobs: Jobs = queue.SimpleQueue()
        self._readers = [
            _Reader(f"db-reader-{i}", connect(path, read_only=True), self._read_jobs) for i in range(readers)
        ]
        self._inline = connect(path, read_only=True)  # used only on the home loop's thread: see lookup
        self._home: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Job] = []
        self._handed_over = 0  # groups the home loop gave the writer thread, not yet committed
        self._commits = 0  # by the home loop, since it last asked for a checkpoint
        self._closed = False
        for thread in [self._writer, *self._readers]:
            thread.start()

    @classmethod
    async def open(cls, path: Path, readers: int = 2) -> Database:
        database = await asyncio.to_thread(cls, path, readers)
        database._home = asyncio.get_running_loop()
        return database

    async def write(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, …)` as one write transaction: its changes commit together, or none do
        if it raises. Once asked for it runs to completion even if the awaiting task is cancelled.
        On the loop that opened the database it runs on the loop's thread; from any other loop
        it runs on the writer thread."""
        if self._closed:
            raise DatabaseClosed("the database is closed")
        loop = asyncio.get_running_loop()
        job = _Job(lambda conn: fn(conn, *args, **kwargs), loop)
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
            _settle([(job, False, DatabaseClosed("the database is closed")) for job in group])
            return
        if not self._lock.acquire(blocking=False):  # the writer thread holds it (a checkpoint, say)
            self._hand_over(group)
            return
        try:
            values = _commit_together(self._conn, group)
        except BaseException:  # another process holds the lock, or a unit failed: the thread sorts it out
            self._hand_over(group)
            return
        finally:
            self._lock.release()
        _settle([(job, True, value) for job, value in zip(group, values)])
        self._commits += 1
        writer = self._writer
        if writer.checkpoint_asked:
            return
        if self._commits >= CHECKPOINT_COMMITS or writer.checkpoint_due():
            self._commits, writer.checkpoint_asked = 0, True
            self._groups.put(_CHECKPOINT)

    def _hand_over(self, group: list[_Job]) -> None:
        """Give a group to the writer thread. The loop's next writes wait until the thread has
        committed it, so writes commit in the order asked, then go on committing on the loop
        (following it to the thread instead made a convoy there under load)."""
        self._handed_over += 1
        marker = _Job(_nothing, group[0].loop)
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
        job = _Job(lambda conn: fn(conn, *args, **kwargs), asyncio.get_running_loop())
        self._read_jobs.put(job)
        result: T = await job.future
        return result

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

    async def close(self) -> None:
        """Finish the writes asked for, checkpoint the WAL into the main file and close every
        connection."""
        if self._closed:
            return
        try:
            if self._pending and asyncio.get_running_loop() is self._home:
                pending, self._pending = self._pending, []
                self._groups.put(pending)  # after every group handed over before them
            done = _Job(_nothing, asyncio.get_running_loop())
            self._groups.put([done])  # runs after every group handed to the thread before it
            await done.future
        finally:
            self._closed = True
            self._groups.put(_STOP)
            for _ in self._readers:
                self._read_jobs.put(_STOP)
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
