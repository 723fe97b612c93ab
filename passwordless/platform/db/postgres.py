"""PostgreSQL, for more than one server (SCALE.md): the same units of work as on SQLite, each run
in a thread of this engine's own pool, on a connection from psycopg's pool.

Writes run at SERIALIZABLE: the units were written for SQLite, where a write transaction holds the
whole database, so a unit may read, decide and write without locking anything itself (count a
user's passkeys, then add one). SERIALIZABLE gives every unit that same guarantee against units
running on other servers at the same moment; PostgreSQL aborts one of two that would have seen
each other's changes, and the unit simply runs again (the unit contract allows it: only its last
run leaves a trace). A unit marked `@concurrent` (the queue claims, which lock their rows with
FOR UPDATE SKIP LOCKED) runs at READ COMMITTED instead, so several servers claim at once.

Reads run in one snapshot (REPEATABLE READ, read only); lookups see the latest commit.

When PostgreSQL cannot be reached every call raises `DatabaseUnavailable` (503 `unavailable`);
the pool keeps trying to reconnect, so the server recovers by itself when the database is back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
import psycopg_pool
from psycopg import IsolationLevel
from psycopg.adapt import Dumper
from psycopg.rows import RowMaker

from passwordless.platform.db.jobs import DatabaseClosed
from passwordless.platform.db.types import CONCURRENT
from passwordless.platform.errors import ApiError

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

CONNECT_TIMEOUT = 5  # seconds to open a connection
WAIT_FOR_CONNECTION = 5.0  # seconds a unit waits for a pooled connection before answering 503
MAX_RUNS = 10  # a unit aborted this many times by concurrent units fails


class DatabaseUnavailable(ApiError):
    """PostgreSQL could not be reached (or the connection broke): 503, try again shortly."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, "unavailable", "The database is unavailable; try again shortly.", {"retry-after": "1"})
        self.detail = detail


# --- SQL: the stores write `?` placeholders (SQLite's); psycopg takes `%s` and wants a literal %
# doubled. INDEXED BY is a SQLite planner hint that PostgreSQL neither needs nor parses.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%|\bINDEXED BY \w+ ?")


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith("'"):
            return token.replace("%", "%%")
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return ""  # INDEXED BY …

    return _TOKENS.sub(replace, sql)


class PgRow:
    """A row readable by position and by column name, as sqlite3.Row is."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values, self._index = values, index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values))!r})"


def _rows(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: PgRow(values, index)


class PgConnection:
    """psycopg's connection as the units see a connection (platform/db/types.py)."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[PgRow]:
        cursor = self.raw.cursor(row_factory=_rows)
        return cursor.execute(translate(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[PgRow]:
        cursor = self.raw.cursor(row_factory=_rows)
        cursor.executemany(translate(sql), [tuple(p) for p in parameters])
        return cursor


class _BoolAsInteger(Dumper):
    """Flags are INTEGER 0/1 on both engines (SQLite has no boolean): store a Python bool so."""

    oid = psycopg.postgres.types["int4"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


def configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_dumper(bool, _BoolAsInteger)


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database. Open with `PostgresDatabase.open(url)`."""

    def __init__(self, url: str, pool_size: int) -> None:
        self.url = url
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min(2, pool_size),
            max_size=pool_size,
            open=False,
            configure=configure,
            check=psycopg_pool.ConnectionPool.check_connection,  # a connection broken by a restart is replaced
            kwargs={"connect_timeout": CONNECT_TIMEOUT, "application_name": "passwordless"},
            timeout=WAIT_FOR_CONNECTION,
            reconnect_timeout=float("inf"),  # keep trying while PostgreSQL is away
            name="passwordless",
        )
        # One thread per connection: a unit holds its connection for its whole run.
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="db-postgres")
        self._closed = False

    @classmethod
    async def open(cls, url: str, pool_size: int = 10) -> PostgresDatabase:
        database = cls(url, pool_size)
        await asyncio.to_thread(database._pool.open, wait=True, timeout=CONNECT_TIMEOUT * 2)
        return database

    async def write(self, fn: Callable[Concatenate[Any, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, …)` as one write transaction (see the module's docstring)."""
        level = IsolationLevel.READ_COMMITTED if getattr(fn, CONCURRENT, False) else IsolationLevel.SERIALIZABLE
        return await self._run(functools.partial(self._write, level, fn, *args, **kwargs))

    async def read(self, fn: Callable[Concatenate[Any, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, …)` in one read-only snapshot."""
        return await self._run(functools.partial(self._once, IsolationLevel.REPEATABLE_READ, True, fn, *args, **kwargs))

    async def lookup(self, fn: Callable[Concatenate[Any, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, …)`: a read by key, each statement seeing the latest commit."""
        return await self._run(functools.partial(self._once, IsolationLevel.READ_COMMITTED, True, fn, *args, **kwargs))

    async def _run(self, call: Callable[[], T]) -> T:
        if self._closed:
            raise DatabaseClosed("the database is closed")
        # If the awaiting task is cancelled the unit still runs to its end; its outcome is then unread.
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def _write(self, level: IsolationLevel, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for run in range(1, MAX_RUNS + 1):
            try:
                return self._once(level, False, fn, *args, **kwargs)
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                if run == MAX_RUNS:
                    raise
        raise AssertionError("unreachable")

    def _once(self, level: IsolationLevel, read_only: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            with self._pool.connection() as raw:
                raw.isolation_level, raw.read_only = level, read_only
                with raw.transaction():
                    return fn(PgConnection(raw), *args, **kwargs)
        except psycopg_pool.PoolTimeout as exc:
            raise DatabaseUnavailable(str(exc)) from None
        except psycopg.OperationalError as exc:  # the connection broke, or PostgreSQL is shutting down
            if isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)):
                raise
            raise DatabaseUnavailable(str(exc)) from None

    def writer_alive(self) -> bool:
        return not self._closed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._threads.shutdown, wait=True)
        await asyncio.to_thread(self._pool.close)
