"""One SQLite file. A writer thread owns the only writing connection and runs each write
transaction whole (BEGIN IMMEDIATE … COMMIT) — one thread hop per transaction, not one per
statement; queued transactions run back to back, in order. Reader threads hold read-only
connections, each read running in its own snapshot.

Store functions are plain functions taking a `sqlite3.Connection`; a service composes them
into one unit and hands it to `write` or `read`:

    await db.write(lambda conn: (tickets.insert(conn, t), audit.record(conn, e)))
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

BUSY_TIMEOUT_MS = 5000
_STOP = None


class DatabaseClosed(Exception):
    """The database was closed before the work could run."""


class _Job:
    __slots__ = ("run", "future")

    def __init__(self, run: Callable[[sqlite3.Connection], Any]) -> None:
        self.run = run
        self.future: Future[Any] = Future()


class _ConnectionThread(threading.Thread):
    """Runs jobs from a queue on the one connection it owns, one at a time."""

    def __init__(self, name: str, conn: sqlite3.Connection, jobs: queue.SimpleQueue[_Job | None]) -> None:
        super().__init__(name=name, daemon=True)
        self.conn = conn
        self.jobs = jobs

    def run(self) -> None:
        try:
            while (job := self.jobs.get()) is not _STOP:
                if job.future.set_running_or_notify_cancel():
                    try:
                        job.future.set_result(job.run(self.conn))
                    except BaseException as exc:  # handed to the awaiting task
                        job.future.set_exception(exc)
        finally:
            self.conn.close()


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection with the project's pragmas; transactions are managed explicitly."""
    if read_only:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only=ON")
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.row_factory = sqlite3.Row
    return conn


def _transaction(
    begin: str, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[[sqlite3.Connection], T]:
    def run(conn: sqlite3.Connection) -> T:
        conn.execute(begin)
        try:
            result = fn(conn, *args, **kwargs)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    return run


class Database:
    """The writer and the readers of one SQLite file. Open with `Database.open(path)`."""

    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        self._write_jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._read_jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[_ConnectionThread] = [
            _ConnectionThread("db-writer", connect(path), self._write_jobs)
        ]
        self._threads += [
            _ConnectionThread(f"db-reader-{i}", connect(path, read_only=True), self._read_jobs)
            for i in range(readers)
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    @classmethod
    async def open(cls, path: Path, readers: int = 2) -> Database:
        return await asyncio.to_thread(cls, path, readers)

    async def write(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, …)` as one write transaction; it commits, or rolls back if fn raises.

        Once queued it runs to completion even if the awaiting task is cancelled."""
        return await self._submit(self._write_jobs, _transaction("BEGIN IMMEDIATE", fn, args, kwargs))

    async def read(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, …)` on a read-only connection, in one consistent snapshot."""
        return await self._submit(self._read_jobs, _transaction("BEGIN", fn, args, kwargs))

    def writer_alive(self) -> bool:
        return not self._closed and self._threads[0].is_alive()

    async def _submit(self, jobs: queue.SimpleQueue[_Job | None], run: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise DatabaseClosed("the database is closed")
        job = _Job(run)
        jobs.put(job)
        result: T = await asyncio.shield(asyncio.wrap_future(job.future))
        return result

    async def close(self) -> None:
        """Finish queued work, checkpoint the WAL into the main file and close every connection."""
        if self._closed:
            return
        try:
            await self._submit(self._write_jobs, _checkpoint)
        finally:
            self._closed = True
            for thread in self._threads:
                (self._write_jobs if thread.name == "db-writer" else self._read_jobs).put(_STOP)
            await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA optimize")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
