"""The PostgreSQL engine itself (passwordless/platform/db/postgres.py), on the suite's cluster: the
SQL the stores write for both engines reaches PostgreSQL intact, write units that would have seen
each other's changes run again rather than fail, a unit's wake-ups wait for its COMMIT, and a
database that cannot be reached, or text it cannot hold, is a clear answer."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import psycopg
import pytest

from passwordless.config.settings import DatabaseSettings
from passwordless.platform import storage
from passwordless.platform.db import Connection, concurrent
from passwordless.platform.db.postgres import DatabaseUnavailable, PostgresDatabase, translate
from passwordless.platform.db.types import after_commit
from passwordless.platform.errors import ApiError
from tests.support.engine import cluster
from tests.support.postgres import Cluster

pytestmark = pytest.mark.anyio


async def fresh() -> PostgresDatabase:
    db = await storage.open_migrated(DatabaseSettings(url=cluster().create_database()))
    assert isinstance(db, PostgresDatabase)
    return db


def test_placeholders_are_translated_outside_string_literals_only() -> None:
    assert translate("SELECT '?', '%', ? FROM t WHERE a LIKE '%x?' AND b = ?") == (
        "SELECT '?', '%%', %s FROM t WHERE a LIKE '%%x?' AND b = %s"
    )
    assert translate("SELECT 'it''s ?' , ?") == "SELECT 'it''s ?' , %s"
    assert translate("UPDATE q INDEXED BY q_due SET a = ? WHERE id = ?") == "UPDATE q SET a = %s WHERE id = %s"


async def test_rows_read_by_name_and_position_and_values_keep_their_types() -> None:
    db = await fresh()
    try:

        def add(conn: Connection) -> None:
            conn.execute(
                "INSERT INTO users (id, email, webauthn_handle, created_at) VALUES (?, ?, ?, ?)",
                ("u1", "ann@example.com", b"\x00\xff", 1_700_000_000),
            )
            conn.execute(
                "INSERT INTO audit_logs (id, created_at, event_type, success, details) VALUES (?, ?, ?, ?, ?)",
                ("a1", 1, "x", True, "{}"),  # a bool is stored as the INTEGER flag SQLite would hold
            )

        await db.write(add)
        row = await db.read(
            lambda conn: conn.execute("SELECT id, email, webauthn_handle, created_at FROM users").fetchone()
        )
        assert row["email"] == row[1] == "ann@example.com"
        assert row["webauthn_handle"] == b"\x00\xff" and row["created_at"] == 1_700_000_000
        assert row.keys() == ["id", "email", "webauthn_handle", "created_at"]
        assert await db.lookup(lambda conn: conn.execute("SELECT success FROM audit_logs").fetchone()[0]) == 1
    finally:
        await db.close()


async def test_write_units_that_would_see_each_other_run_again_instead_of_failing() -> None:
    """Twenty units each read the count and write count + 1, at the same time, from threads of
    their own: SERIALIZABLE aborts all but one of each clash and the engine runs them again, so
    the count ends at twenty, as it would on SQLite, where one writer goes at a time."""
    db = await fresh()
    try:
        await db.write(lambda conn: conn.execute(
            "INSERT INTO users (id, email, webauthn_handle, created_at) VALUES ('c', 'c@example.com', ?, 0)", (b"c",)
        ))
        runs: list[int] = []

        def bump(conn: Connection) -> None:
            runs.append(1)
            count = conn.execute("SELECT created_at FROM users WHERE id = 'c'").fetchone()[0]
            conn.execute("UPDATE users SET created_at = ? WHERE id = 'c'", (count + 1,))

        await asyncio.gather(*(db.write(bump) for _ in range(20)))
        final = await db.read(lambda conn: conn.execute("SELECT created_at FROM users WHERE id = 'c'").fetchone()[0])
        assert final == 20
        assert len(runs) >= 20
    finally:
        await db.close()


async def test_a_wake_up_asked_for_in_a_unit_comes_after_its_commit_and_only_once() -> None:
    db = await fresh()
    seen: list[int] = []
    try:

        def enqueue(conn: Connection) -> None:
            conn.execute(
                "INSERT INTO users (id, email, webauthn_handle, created_at) VALUES ('w', 'w@example.com', ?, 0)",
                (b"w",),
            )
            after_commit(conn, lambda: seen.append(count_users()))

        def count_users() -> int:  # from another connection: sees only what was committed
            with psycopg.connect(db.url, autocommit=True) as other:
                row = other.execute("SELECT count(*) FROM users").fetchone()
                return int(row[0]) if row else -1

        await db.write(enqueue)
        assert seen == [1]

        def failing(conn: Connection) -> None:
            after_commit(conn, lambda: seen.append(-1))
            raise ValueError("no")

        with pytest.raises(ValueError):
            await db.write(failing)
        assert seen == [1]
    finally:
        await db.close()


async def test_concurrent_units_run_at_read_committed_and_take_rows_with_skip_locked() -> None:
    db = await fresh()
    try:
        inside = threading.Event()
        release = threading.Event()

        @concurrent
        def hold(conn: Connection) -> str:
            level = conn.execute("SHOW transaction_isolation").fetchone()[0]
            inside.set()
            release.wait(5)
            return str(level)

        @concurrent
        def level_of(conn: Connection) -> str:
            return str(conn.execute("SHOW transaction_isolation").fetchone()[0])

        held = asyncio.ensure_future(db.write(hold))
        await asyncio.to_thread(inside.wait, 5)
        assert await db.write(level_of) == "read committed"
        assert await db.write(lambda conn: str(conn.execute("SHOW transaction_isolation").fetchone()[0])) == (
            "serializable"
        )
        release.set()
        assert await held == "read committed"
    finally:
        await db.close()


async def test_text_postgresql_cannot_hold_is_a_400_not_a_500() -> None:
    db = await fresh()
    try:
        with pytest.raises(ApiError) as refused:
            await db.read(lambda conn: conn.execute("SELECT id FROM users WHERE email = ?", ("a\x00b",)).fetchall())
        assert (refused.value.status, refused.value.code) == (400, "invalid_request")
    finally:
        await db.close()


async def test_a_database_that_went_away_is_a_503_and_the_engine_recovers_when_it_is_back(tmp_path: Path) -> None:
    own = Cluster.start(Path(tmp_path_short()))
    try:
        db = await storage.open_migrated(DatabaseSettings(url=own.create_database(), pool_size=2))
        try:
            assert await db.read(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
            own.kill()
            with pytest.raises(DatabaseUnavailable) as unavailable:
                await db.read(lambda conn: conn.execute("SELECT 1").fetchone()[0])
            assert (unavailable.value.status, unavailable.value.code) == (503, "unavailable")
            assert unavailable.value.headers == {"retry-after": "1"}
            own.restart()
            assert await db.read(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
        finally:
            await db.close()
    finally:
        own.stop()


def tmp_path_short() -> str:
    """A folder short enough for PostgreSQL's socket path (pytest's tmp_path may not be)."""
    import tempfile

    return tempfile.mkdtemp(prefix="pw-eng-")
