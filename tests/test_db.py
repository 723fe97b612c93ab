"""The Database against a real SQLite file: pragmas, atomic write units, serialised writes
(grouped on the event loop, or on the writer thread while another process holds the lock),
snapshot reads, foreign keys, online backups while writing, checkpoints, close() and
cancellation."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import pytest

from passwordless.platform import migrate
from passwordless.platform.db import Database, DatabaseClosed, SqliteDatabase
from passwordless.platform.db.writer import RESET_FRAMES
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

Unit = Callable[[sqlite3.Connection], None]
T = TypeVar("T")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await SqliteDatabase.open(tmp_path / "auth.db")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def migrated_db(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "auth.db"
    migrate.apply_to_file(path, migrate.discover(migrate.default_dir()))
    database = await SqliteDatabase.open(path)
    try:
        yield database
    finally:
        await database.close()


def scalar(conn: sqlite3.Connection, sql: str, *params: object) -> object:
    return conn.execute(sql, params).fetchone()[0]


def create_pair_tables(conn: sqlite3.Connection) -> None:
    """Two tables that every test write changes together."""
    conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")


def insert_pair(conn: sqlite3.Connection, n: int) -> None:
    conn.execute("INSERT INTO a (n) VALUES (?)", (n,))
    conn.execute("INSERT INTO b (n) VALUES (?)", (n,))


def count_pair(conn: sqlite3.Connection) -> tuple[int, int]:
    a, b = conn.execute("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)").fetchone()
    return a, b


class OtherProcessLock:
    """Holds the database's write lock from another connection, as a migration or an operator's
    sqlite3 shell would: writes asked for meanwhile go to the writer thread, which waits for the
    lock and then commits them as one group."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    async def __aenter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.05)  # every write asked for inside the block has been handed over
        self.conn.execute("COMMIT")
        self.conn.close()


class OnTheLoop:
    """No other process: writes asked for together are committed together on the event loop."""

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, *exc: object) -> None:
        pass


Grouping = Callable[[Database], "OtherProcessLock | OnTheLoop"]


@pytest.fixture(params=["on the loop", "behind another process's lock"])
def grouped(request: pytest.FixtureRequest) -> Grouping:
    if request.param == "on the loop":
        return lambda db: OnTheLoop()
    return lambda db: OtherProcessLock(db.path)


async def from_another_loop(db: Database, unit: Callable[[sqlite3.Connection], T]) -> T:
    """Run a write from a second event loop, on another thread: it goes to the writer thread."""

    async def write() -> T:
        return await db.write(unit)

    return await asyncio.to_thread(asyncio.run, write())


# --- pragmas and read-only readers -----------------------------------------------------------


async def test_writer_pragmas(db: Database) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[object, ...]:
        return tuple(
            scalar(conn, f"PRAGMA {name}")
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        )

    # On the loop a write never waits for a lock (busy_timeout 0): it is handed to the writer
    # thread, whose connection waits up to 5 s.
    assert await db.write(pragmas) == ("wal", 1, 1, 0)
    assert await from_another_loop(db, pragmas) == ("wal", 1, 1, 5000)


async def test_reader_pragmas(db: Database) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[object, ...]:
        return tuple(scalar(conn, f"PRAGMA {name}") for name in ("journal_mode", "foreign_keys", "busy_timeout"))

    assert await db.read(pragmas) == ("wal", 1, 5000)


async def test_reader_is_read_only(db: Database) -> None:
    await db.write(lambda conn: conn.execute("CREATE TABLE t (x)"))

    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|read only"):
        await db.read(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
    with pytest.raises(sqlite3.OperationalError):
        await db.read(lambda conn: conn.execute("CREATE TABLE u (x)"))

    assert await db.read(scalar, "SELECT count(*) FROM t") == 0
    assert await db.read(scalar, "SELECT count(*) FROM sqlite_master WHERE name = 'u'") == 0


# --- write units -----------------------------------------------------------------------------


async def test_failing_write_unit_commits_nothing_and_raises_the_same_exception(db: Database) -> None:
    await db.write(create_pair_tables)
    boom = ValueError("boom")

    def two_inserts_then_fail(conn: sqlite3.Connection) -> None:
        insert_pair(conn, 1)
        raise boom

    with pytest.raises(ValueError) as caught:
        await db.write(two_inserts_then_fail)
    assert caught.value is boom

    assert await db.read(count_pair) == (0, 0)
    await db.write(insert_pair, 2)
    assert await db.read(count_pair) == (1, 1)


async def test_failing_unit_among_queued_writes_rolls_back_alone(db: Database, grouped: Grouping) -> None:
    await db.write(create_pair_tables)

    def insert_or_fail(conn: sqlite3.Connection, n: int) -> int:
        insert_pair(conn, n)
        if n == 5:
            raise ValueError(n)
        return n

    async with grouped(db):
        writes = [asyncio.ensure_future(db.write(insert_or_fail, n)) for n in range(10)]
    results = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 5)

    assert isinstance(results[5], ValueError)
    assert [r for r in results if not isinstance(r, BaseException)] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert await db.read(lambda conn: [r[0] for r in conn.execute("SELECT n FROM a ORDER BY n")]) == [
        0, 1, 2, 3, 4, 6, 7, 8, 9
    ]
    assert await db.read(count_pair) == (9, 9)


def create_parent_child(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, n INTEGER NOT NULL UNIQUE ON CONFLICT ROLLBACK)")
    conn.execute(
        "CREATE TABLE child (id INTEGER PRIMARY KEY,"
        " parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.execute("INSERT INTO item (n) VALUES (0)")


def insert_item(conn: sqlite3.Connection, n: int) -> None:
    conn.execute("INSERT INTO item (n) VALUES (?)", (n,))


def orphan_child(conn: sqlite3.Connection) -> None:
    """Fails only at COMMIT: the foreign key is deferred."""
    conn.execute("INSERT INTO child (parent_id) VALUES (999)")


def duplicate_item(conn: sqlite3.Connection) -> None:
    """Its conflict clause makes SQLite roll back the whole transaction."""
    insert_item(conn, 0)


@pytest.mark.parametrize("bad_unit", [orphan_child, duplicate_item])
async def test_no_caller_is_told_success_for_work_that_was_rolled_back(
    db: Database, bad_unit: Unit, grouped: Grouping
) -> None:
    await db.write(create_parent_child)

    async with grouped(db):
        first = asyncio.ensure_future(db.write(insert_item, 1))
        bad = asyncio.ensure_future(db.write(bad_unit))
        last = asyncio.ensure_future(db.write(insert_item, 2))
    results = await asyncio.wait_for(asyncio.gather(first, bad, last, return_exceptions=True), 5)

    assert isinstance(results[1], sqlite3.IntegrityError)
    items = await db.read(lambda conn: {r[0] for r in conn.execute("SELECT n FROM item")})
    for n, result in ((1, results[0]), (2, results[2])):
        assert (n in items) == (not isinstance(result, BaseException)), (n, result, items)
    assert await db.read(scalar, "SELECT count(*) FROM child") == 0


@pytest.mark.parametrize("bad_unit", [orphan_child, duplicate_item])
async def test_a_bad_unit_does_not_fail_the_writes_queued_with_it(
    db: Database, bad_unit: Unit, grouped: Grouping
) -> None:
    """write() promises: its changes commit unless fn raises — whatever other callers do."""
    await db.write(create_parent_child)

    async with grouped(db):
        first = asyncio.ensure_future(db.write(insert_item, 1))
        bad = asyncio.ensure_future(db.write(bad_unit))
        last = asyncio.ensure_future(db.write(insert_item, 2))
    results = await asyncio.wait_for(asyncio.gather(first, bad, last, return_exceptions=True), 5)

    assert isinstance(results[1], sqlite3.IntegrityError)
    assert results[0] is None and results[2] is None, results
    assert await db.read(lambda conn: sorted(r[0] for r in conn.execute("SELECT n FROM item"))) == [0, 1, 2]


async def test_write_returns_the_result_and_passes_arguments(db: Database) -> None:
    await db.write(create_pair_tables)

    def insert_and_return(conn: sqlite3.Connection, n: int, *, twice: bool) -> int:
        insert_pair(conn, n)
        if twice:
            insert_pair(conn, n)
        return n * 2

    assert await db.write(insert_and_return, 21, twice=True) == 42
    assert await db.read(count_pair) == (2, 2)


async def test_concurrent_read_modify_write_increments_are_serialised(db: Database) -> None:
    def setup(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        conn.execute("INSERT INTO counter VALUES (0)")

    await db.write(setup)

    def increment(conn: sqlite3.Connection) -> None:
        n = scalar(conn, "SELECT n FROM counter")
        time.sleep(0)  # give any other writer a chance to interleave
        conn.execute("UPDATE counter SET n = ?", (n + 1,))  # type: ignore[operator]

    await asyncio.gather(*(db.write(increment) for _ in range(300)))

    assert await db.read(scalar, "SELECT n FROM counter") == 300


# --- reads -----------------------------------------------------------------------------------


async def test_read_sees_committed_write(db: Database) -> None:
    await db.write(create_pair_tables)
    await db.write(insert_pair, 7)
    assert await db.read(scalar, "SELECT n FROM a") == 7


async def test_read_sees_one_snapshot_while_writes_run(db: Database) -> None:
    def setup(conn: sqlite3.Connection) -> None:
        create_pair_tables(conn)
        insert_pair(conn, 0)

    await db.write(setup)

    def bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE a SET n = n + 1")
        conn.execute("UPDATE b SET n = n + 1")

    def both(conn: sqlite3.Connection) -> tuple[object, object]:
        first = scalar(conn, "SELECT n FROM a")
        time.sleep(0.001)  # a write commits here if reads are not isolated
        return first, scalar(conn, "SELECT n FROM b")

    async def write_one_by_one() -> None:  # a commit after every bump
        for _ in range(300):
            await db.write(bump)

    writes = asyncio.ensure_future(write_one_by_one())
    seen = await asyncio.gather(*(db.read(both) for _ in range(150)))
    await writes

    assert all(a == b for a, b in seen), [pair for pair in seen if pair[0] != pair[1]]
    assert len(set(seen)) > 1, "no read overlapped the writes"
    assert await db.read(both) == (300, 300)


# --- foreign keys with the real schema -------------------------------------------------------


async def test_foreign_keys_are_enforced(migrated_db: Database) -> None:
    def session_for_missing_user(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO sessions (id, user_id, refresh_token_hash, amr, created_at, last_used_at, expires_at)"
            " VALUES ('s1', 'no-such-user', x'01', '[\"email\"]', 0, 0, 1)"
        )

    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await migrated_db.write(session_for_missing_user)
    assert await migrated_db.read(scalar, "SELECT count(*) FROM sessions") == 0


# --- online backup while writing -------------------------------------------------------------


def check_backup(path: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as conn:
        assert scalar(conn, "PRAGMA integrity_check") == "ok"
        return count_pair(conn)


async def test_backup_while_writing_is_consistent(db: Database, tmp_path: Path) -> None:
    await db.write(create_pair_tables)
    total = 500
    cli = shutil.which("sqlite3")
    stop = threading.Event()
    counts: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def back_up_repeatedly() -> None:
        try:
            with closing(sqlite3.connect(db.path, timeout=5)) as source:
                i = 0
                while not stop.is_set():
                    out = tmp_path / f"backup-{i}.db"
                    with closing(sqlite3.connect(out)) as target:
                        source.backup(target)
                    counts.append(check_backup(out))
                    out.unlink()
                    if cli:  # the real `sqlite3 auth.db ".backup X"`, when installed
                        out = tmp_path / f"cli-backup-{i}.db"
                        subprocess.run([cli, str(db.path), f".backup '{out}'"], check=True, timeout=30)
                        counts.append(check_backup(out))
                        out.unlink()
                    i += 1
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    backer = threading.Thread(target=back_up_repeatedly)
    backer.start()
    try:
        for n in range(total):
            if n == total // 2:  # pause until a backup has been taken wholly within the pause
                taken = len(counts)
                await asyncio.to_thread(wait_until, lambda: len(counts) >= taken + 2 or bool(errors), "two more counts", 30, 0.001)
            await db.write(insert_pair, n)
    finally:
        stop.set()
        await asyncio.to_thread(backer.join, 60)

    assert errors == []
    assert counts, "no backup was taken"
    assert all(a == b and 0 <= a <= total for a, b in counts), counts
    assert (total // 2, total // 2) in counts
    assert await db.read(count_pair) == (total, total)


# --- close -----------------------------------------------------------------------------------


async def test_close_checkpoints_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    db = await SqliteDatabase.open(path)
    await db.write(create_pair_tables)
    for n in range(50):
        await db.write(insert_pair, n)
    assert await db.read(count_pair) == (50, 50)
    wal = Path(f"{path}-wal")
    assert wal.exists() and wal.stat().st_size > 0

    await db.close()

    assert not wal.exists() or wal.stat().st_size == 0
    # immutable=1 ignores any WAL: the rows must be in the main file itself
    with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as conn:
        assert count_pair(conn) == (50, 50)
    with closing(sqlite3.connect(path)) as conn:
        assert count_pair(conn) == (50, 50)


async def test_write_and_read_after_close_raise(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "auth.db")
    await db.write(create_pair_tables)
    await db.close()

    with pytest.raises(DatabaseClosed):
        await asyncio.wait_for(db.write(insert_pair, 1), 5)
    with pytest.raises(DatabaseClosed):
        await asyncio.wait_for(db.read(count_pair), 5)
    assert not db.writer_alive()
    await db.close()  # a second close is harmless


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    db = await SqliteDatabase.open(path)
    await db.write(create_pair_tables)

    writes = [asyncio.ensure_future(db.write(insert_pair, n)) for n in range(20)]
    await asyncio.sleep(0)  # every write is queued
    await db.close()

    await asyncio.wait_for(asyncio.gather(*writes), 5)
    with closing(sqlite3.connect(path)) as conn:
        assert count_pair(conn) == (20, 20)


# --- cancellation ----------------------------------------------------------------------------


async def test_cancelled_task_does_not_lose_its_queued_write(db: Database) -> None:
    await db.write(create_pair_tables)

    async with OtherProcessLock(db.path):
        task = asyncio.ensure_future(db.write(insert_pair, 1))
        await asyncio.sleep(0.01)  # the write waits for the lock on the writer thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert await asyncio.wait_for(db.write(count_pair), 5) == (1, 1)


# --- the event loop never waits for SQLite ----------------------------------------------------


async def test_the_loop_runs_on_while_another_process_holds_the_write_lock(db: Database) -> None:
    """A write that cannot take the lock waits on the writer thread, not on the event loop, and
    commits once the lock is free."""
    await db.write(create_pair_tables)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    holder = sqlite3.connect(db.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(db.write(insert_pair, 1))
        await asyncio.sleep(0.5)
        assert not write.done()
        assert ticks >= 20, f"the loop ran only {ticks} times in 0.5 s"
        holder.execute("COMMIT")
        await asyncio.wait_for(write, 5)
    finally:
        holder.close()
        ticker.cancel()
    assert await db.read(count_pair) == (1, 1)


async def test_the_wal_stays_small_while_writes_go_on(db: Database) -> None:
    """The loop's connection never checkpoints (it would stall the loop): the writer thread
    does, in the background, and from time to time makes a checkpoint complete, so the WAL
    starts over instead of growing for as long as writes never pause."""
    await db.write(lambda conn: conn.execute("CREATE TABLE blob (b BLOB NOT NULL)"))
    page = await db.read(scalar, "PRAGMA page_size")
    assert isinstance(page, int)
    # A WAL frame is a page and its header. The WAL starts over once a checkpoint completes past
    # RESET_FRAMES; until the writer thread gets to it writes go on. Checkpoints that never
    # complete left 203 MB. Writing three times 3 × RESET_FRAMES' worth tells the two apart.
    bound = 3 * RESET_FRAMES * (page + 24)
    blob = b"x" * 1_000
    written = 0

    async def write_without_pause(deadline: float) -> None:
        nonlocal written
        while written < 3 * bound and time.monotonic() < deadline:
            await db.write(lambda conn: conn.execute("INSERT INTO blob VALUES (?)", (blob,)))
            written += len(blob)

    deadline = time.monotonic() + 30
    await asyncio.gather(*(write_without_pause(deadline) for _ in range(8)))

    wal = Path(f"{db.path}-wal").stat().st_size
    assert written >= 3 * bound, f"only {written} bytes written in 30 s: too few to tell"
    # The file keeps its largest size: on a quiet machine about RESET_FRAMES' worth, and 52 MB was
    # seen with other test runs busy on both cores; a WAL that never starts over holds everything.
    assert wal < written / 2, f"the WAL holds {wal} bytes after {written} written"
