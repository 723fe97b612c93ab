"""PostgreSQL, for more than one server (SCALE.md): the same units of work as on SQLite, each run
in a thread of this engine's own pool, on a connection from psycopg's pool.

Writes run at SERIALIZABLE: the units were written for SQLite, where a write transaction holds the
whole database, so a unit may read, decide and write without locking anything itself (count a
user's passkeys, then add one). SERIALIZABLE gives every unit that same guarantee against units
running on other servers at the same moment; PostgreSQL aborts one of two that would have seen
each other's changes, and the unit simply runs again, a moment later (the unit contract allows
it: only its last run leaves a trace); one aborted MAX_RUNS times answers 503, like an outage. A unit marked `@concurrent` (the queue claims, which lock their rows with
FOR UPDATE SKIP LOCKED) runs at READ COMMITTED instead, so several servers claim at once.

The sign-in and refresh units are marked too: every step two of them could both pass at once is
one statement there (magic_link/service.py), and under load SERIALIZABLE kept aborting them.

Reads run in one snapshot (REPEATABLE READ, read only); lookups see the latest commit, each
statement on its own (autocommit: no BEGIN and COMMIT round trips).

When PostgreSQL cannot be reached every call raises `DatabaseUnavailable` (503 `unavailable`);
the pool keeps trying to reconnect, so the server recovers by itself when the database is back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import threading
import time
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
MAX_RUNS = 20  # a unit aborted this many times by concurrent units answers 503
RETRY_JITTER = 0.002  # seconds × the run: how far apart units that clashed run again
CHECK_IDLE_SECONDS = 2.0  # a connection idle longer is tried before it is lent
LISTEN_CHECK_SECONDS = 0.5  # how soon a listener notices the database is closing
LISTEN_RETRY_SECONDS = 2.0  # between attempts to listen again while PostgreSQL is away


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

    __slots__ = ("raw", "committed")

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.committed: list[Callable[[], None]] = []  # run once this run's transaction commits

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.committed.append(callback)

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


_Mode = tuple[IsolationLevel, bool, bool]  # isolation, read only, autocommit
READ: _Mode = (IsolationLevel.REPEATABLE_READ, True, False)  # one snapshot
LOOKUP: _Mode = (IsolationLevel.READ_COMMITTED, True, True)  # statements by key, each its own


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database. Open with `PostgresDatabase.open(url)`."""

    def __init__(self, url: str, pool_size: int) -> None:
        self.url = url
        self._returned: dict[int, float] = {}  # when each pooled connection was last given back
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min(2, pool_size),
            max_size=pool_size,
            open=False,
            configure=configure,
            check=self._check,  # a connection broken by a restart is replaced
            reset=self._returning,
            # No server-side prepared statements: they are session state, which PgBouncer in
            # transaction mode does not keep (SCALE.md: it must work behind one).
            kwargs={"connect_timeout": CONNECT_TIMEOUT, "application_name": "passwordless", "prepare_threshold": None},
            timeout=WAIT_FOR_CONNECTION,
            reconnect_timeout=float("inf"),  # keep trying while PostgreSQL is away
            name="passwordless",
        )
        # One thread per connection: a unit holds its connection for its whole run.
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="db-postgres")
        self._closed = False
        self._listening = threading.Event()  # cleared to stop the listeners
        self._listening.set()
        self._listeners: list[_Listener] = []

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
        return await self._run(functools.partial(self._once, READ, fn, *args, **kwargs))

    async def lookup(self, fn: Callable[Concatenate[Any, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, …)`: a read by key, each statement seeing the latest commit."""
        return await self._run(functools.partial(self._once, LOOKUP, fn, *args, **kwargs))

    async def _run(self, call: Callable[[], T]) -> T:
        if self._closed:
            raise DatabaseClosed("the database is closed")
        # If the awaiting task is cancelled the unit still runs to its end; its outcome is then unread.
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def _write(self, level: IsolationLevel, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for run in range(1, MAX_RUNS + 1):
            try:
                return self._once((level, False, False), fn, *args, **kwargs)
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
                if run == MAX_RUNS:  # busy beyond reason: the client may try again, as on an outage
                    raise DatabaseUnavailable(str(exc)) from None
                time.sleep(random.uniform(0, RETRY_JITTER * run))  # apart, or they clash again at once
        raise AssertionError("unreachable")

    def _once(self, mode: _Mode, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        level, read_only, autocommit = mode
        try:
            with self._pool.connection() as raw:
                conn = PgConnection(raw)
                if autocommit:  # a lookup: one statement, no BEGIN and COMMIT round trips around it
                    raw.autocommit = True
                    try:
                        result = fn(conn, *args, **kwargs)
                    finally:
                        raw.autocommit = False
                else:
                    raw.isolation_level, raw.read_only = level, read_only
                    with raw.transaction():
                        result = fn(conn, *args, **kwargs)
        except psycopg_pool.PoolTimeout as exc:
            raise DatabaseUnavailable(str(exc)) from None
        except psycopg.DataError as exc:
            if "NUL" not in str(exc):
                raise
            # Text with NUL in it (which PostgreSQL cannot hold) from a form field, say: the
            # client's mistake, never stored or found (the web kit refuses it in addresses).
            raise ApiError(400, "invalid_request", "Text may not contain NUL characters.") from None
        except psycopg.OperationalError as exc:  # the connection broke, or PostgreSQL is shutting down
            if isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)):
                raise
            raise DatabaseUnavailable(str(exc)) from None
        for callback in conn.committed:  # only the run that committed: an aborted run's are dropped
            callback()
        return result

    def _check(self, raw: psycopg.Connection[Any]) -> None:
        """Before lending a connection: one that sat idle a while is tried first (PostgreSQL may
        have restarted meanwhile, breaking it); a busy server's connections are not, which would
        cost a round trip per unit."""
        if time.monotonic() - self._returned.get(id(raw), 0.0) > CHECK_IDLE_SECONDS:
            psycopg_pool.ConnectionPool.check_connection(raw)

    def _returning(self, raw: psycopg.Connection[Any]) -> None:
        self._returned[id(raw)] = time.monotonic()

    def listen(self, channel: str, wake: Callable[[], None]) -> None:
        """Call `wake` (on the event loop) whenever any server NOTIFYs `channel`. The listening
        connection is a direct one of its own (LISTEN needs a session: through PgBouncer in
        transaction mode it hears nothing, and the workers' polling still finds every row)."""
        loop = asyncio.get_running_loop()
        listener = _Listener(self.url, channel, lambda: loop.call_soon_threadsafe(wake), self._listening)
        self._listeners.append(listener)
        listener.start()

    def writer_alive(self) -> bool:
        return not self._closed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._listening.clear()
        await asyncio.to_thread(self._threads.shutdown, wait=True)
        for listener in self._listeners:
            await asyncio.to_thread(listener.join)
        await asyncio.to_thread(self._pool.close)


class _Listener(threading.Thread):
    """LISTENs on one channel on a connection of its own, reconnecting while PostgreSQL is away."""

    def __init__(self, url: str, channel: str, wake: Callable[[], object], running: threading.Event) -> None:
        super().__init__(name=f"db-listen-{channel}", daemon=True)
        self.url, self.channel, self.wake, self.running = url, channel, wake, running

    def run(self) -> None:
        while self.running.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self.wake()  # rows may have been queued while nobody listened
                    while self.running.is_set():
                        for _ in conn.notifies(timeout=LISTEN_CHECK_SECONDS, stop_after=1):
                            self.wake()
            except psycopg.Error:
                if not _sleep_unless_stopped(self.running, LISTEN_RETRY_SECONDS):
                    return


def _sleep_unless_stopped(running: threading.Event, seconds: float) -> bool:
    """Sleep, waking early only if stopped; whether still running."""
    deadline = time.monotonic() + seconds
    while running.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)
    return running.is_set()
