"""Committing write groups: together on the event loop (`commit_together`), or on the writer thread
when the loop cannot (another process holds the lock, or a unit failed), which also checkpoints."""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from typing import Any

from passwordless.platform.db.connection import BUSY_TIMEOUT_MS
from passwordless.platform.db.jobs import CHECKPOINT, STOP, Groups, Job, Outcome, deliver

MAX_GROUP = 64  # write transactions committed together at most
# While the loop commits, the writer thread checkpoints every CHECKPOINT_SECONDS, or after
# CHECKPOINT_COMMITS commits if that comes first. Often and small: a sign-in writes about 15 WAL
# frames, so at 1,000 sign-ins a second each checkpoint of the old cadence (0.5 s, 250 commits,
# 4,000 frames) copied and fsynced 15-30 MB for 12-18 ms on the server's one core, and requests in
# flight waited up to 35 ms; at this cadence they wait a few ms (docs/performance.md).
CHECKPOINT_SECONDS = 0.1
CHECKPOINT_COMMITS = 50
RESET_FRAMES = 1000  # a WAL this long (4 MB of 4 KB pages) is wholly copied and started over


class _Abandoned(Exception):
    """SQLite rolled back the whole transaction while a unit ran."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def commit_together(conn: sqlite3.Connection, group: list[Job]) -> list[Any]:
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


class Writer(threading.Thread):
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

    def _next_group(self) -> tuple[list[Job], bool]:
        group: list[Job] = []
        item = self.groups.get()
        while True:
            if item is STOP:
                return group, True
            if item == CHECKPOINT:
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

    def _commit_waiting(self, group: list[Job]) -> None:
        """Commit the group, waiting up to the busy timeout for another process's lock. If any
        unit raises, or the transaction fails, it runs again the careful way (_commit_isolated):
        a unit may therefore run more than once, only its last run leaving a trace."""
        self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            try:
                values = commit_together(self.conn, group)
            except BaseException:
                self._commit_isolated(group)
                return
            deliver([(job, True, value) for job, value in zip(group, values)])
        finally:
            self.conn.execute("PRAGMA busy_timeout=0")

    def _commit_isolated(self, group: list[Job]) -> None:
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
                deliver([(group[0], False, exc.cause if isinstance(exc, _Abandoned) else exc)])
            return
        deliver(outcomes)

    def _run_unit(self, job: Job) -> tuple[bool, Any]:
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
