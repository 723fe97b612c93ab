"""What a unit of work sees of its connection, on either engine: `execute` and `executemany`
with `?` placeholders, and rows readable by column name and by position. A SQLite connection is
one as it is; on PostgreSQL `postgres.PgConnection` adapts psycopg's."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

Dialect = Literal["sqlite", "postgres"]
T = TypeVar("T")
P = ParamSpec("P")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int, /) -> list[Any]: ...

    @property
    def description(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


class Row(Protocol):
    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...


CONCURRENT = "takes_own_row_locks"


def concurrent(unit: Callable[P, T]) -> Callable[P, T]:
    """Mark a write unit that locks the rows it takes itself (FOR UPDATE SKIP LOCKED: the queue
    claims), so that PostgreSQL runs it at READ COMMITTED and several servers run it at once
    without aborting one another. SQLite, one writer at a time, has nothing to do with it."""
    setattr(unit, CONCURRENT, True)
    return unit


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Call `callback` once the unit's transaction has committed (to wake a worker for a row the
    unit queued). On SQLite the unit runs on the event loop and the worker's next claim commits
    after it, so now is soon enough; PostgreSQL runs units in threads of its own, where a worker
    woken before the COMMIT could look for the row too early."""
    hook = getattr(conn, "after_commit", None)
    if hook is None:
        callback()
    else:
        hook(callback)


def notify(conn: Connection, channel: str) -> None:
    """Tell every server listening on `channel` (PostgreSQL's NOTIFY, delivered at COMMIT) that a
    row is waiting: another server's worker may take it. Nothing to do on SQLite (one server)."""
    if dialect(conn) == "postgres":
        conn.execute(f"NOTIFY {channel}")


def try_lock(conn: Connection, key: int) -> bool:
    """Take the lock `key` until the unit's transaction ends, unless another server holds it
    (PostgreSQL's pg_try_advisory_xact_lock). On SQLite the write transaction is the lock."""
    if dialect(conn) == "sqlite":
        return True
    return bool(conn.execute("SELECT pg_try_advisory_xact_lock(?)", (key,)).fetchone()[0])


def dialect(conn: Connection) -> Dialect:
    """Which SQL the connection speaks: stores ask only where the two engines differ."""
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgres"


class Database(Protocol):
    """What services use of either engine (database.py: SQLite; postgres.py: PostgreSQL). A unit
    is a function of a connection; the unit contract is in database.py's `write`."""

    async def write(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the unit as one write transaction."""

    async def read(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the unit in one read-only snapshot."""

    async def lookup(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a read by key, as cheaply as the engine can."""

    def listen(self, channel: str, wake: Callable[[], None]) -> None:
        """Call `wake` on the event loop whenever a unit on any server `notify`s `channel`."""

    def writer_alive(self) -> bool: ...

    async def close(self) -> None: ...
