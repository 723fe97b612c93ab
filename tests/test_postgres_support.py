"""The PostgreSQL test harness (tests/support/postgres.py) and the PostgreSQL migrations: the
cluster starts, the migrations apply with psql in order and give the SQLite schema's tables,
columns and indexes, databases are independent, and data outlives a crash."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.postgres import BINARIES, Cluster

MIGRATIONS = Path(__file__).parent.parent / "migrations"
SQLITE_FILES = sorted((MIGRATIONS / "sqlite").glob("*.sql"))
POSTGRES_FILES = sorted((MIGRATIONS / "postgres").glob("*.sql"))
# The translation's rules: fractional-second queue timings, 0/1 flags kept as INTEGER.
DOUBLE = {
    (t, c) for t in ("email_queue", "webhook_queue", "oidc_backchannel_queue") for c in ("next_attempt_at", "lease_expires_at")
}
INTEGER = {("passkeys", "backup_eligible"), ("passkeys", "backed_up"), ("audit_logs", "success")}
INTEGER |= {("schema_migrations", "version")}


@dataclass(frozen=True)
class Table:
    columns: dict[str, tuple[str, bool]]  # name: (type, NOT NULL)
    primary_key: frozenset[str]
    unique: frozenset[frozenset[str]]  # the column sets of UNIQUE constraints
    indexes: frozenset[str]  # the names of the CREATE INDEX ones


def _psql_apply(url: str, path: Path) -> None:
    done = subprocess.run(
        [str(BINARIES / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{path.name}: {done.stderr}"


def _sqlite_schema() -> dict[str, Table]:
    conn = sqlite3.connect(":memory:")
    for path in SQLITE_FILES:
        conn.executescript(path.read_text(encoding="utf-8"))
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    schema: dict[str, Table] = {}
    for table in tables:
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()
        index_list = conn.execute(f"PRAGMA index_list({table})").fetchall()  # seq, name, unique, origin, partial
        uniques = {
            frozenset(r[2] for r in conn.execute(f"PRAGMA index_info({i[1]})")) for i in index_list if i[3] == "u"
        }
        schema[table] = Table(
            columns={r[1]: (r[2], bool(r[3]) or r[5] > 0) for r in info},
            primary_key=frozenset(r[1] for r in info if r[5] > 0),
            unique=frozenset(uniques),
            indexes=frozenset(i[1] for i in index_list if i[3] == "c"),
        )
    conn.close()
    return schema


def _postgres_schema(url: str) -> dict[str, Table]:
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        schema: dict[str, Table] = {}
        for table in tables:
            columns = conn.execute(
                "SELECT column_name, data_type, is_nullable = 'NO' FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = %s",
                (table,),
            ).fetchall()
            constraints = conn.execute(
                "SELECT c.contype, array_agg(a.attname::text) FROM pg_constraint c "
                "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) "
                "WHERE c.conrelid = %s::regclass AND c.contype IN ('p', 'u') GROUP BY c.oid, c.contype",
                (table,),
            ).fetchall()
            indexes = conn.execute(
                "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "WHERE x.indrelid = %s::regclass "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
                (table,),
            ).fetchall()
            schema[table] = Table(
                columns={name: (kind, not_null) for name, kind, not_null in columns},
                primary_key=frozenset(col for kind, cols in constraints if kind == "p" for col in cols),
                unique=frozenset(frozenset(cols) for kind, cols in constraints if kind == "u"),
                indexes=frozenset(r[0] for r in indexes),
            )
    return schema


def _expected_postgres_type(table: str, column: str, sqlite_type: str) -> str:
    if sqlite_type == "BLOB":
        return "bytea"
    if sqlite_type == "TEXT":
        return "text"
    assert sqlite_type == "INTEGER", (table, column, sqlite_type)
    if (table, column) in DOUBLE:
        return "double precision"
    return "integer" if (table, column) in INTEGER else "bigint"


def test_the_cluster_runs_on_localhost_without_durability(postgres_cluster: Cluster) -> None:
    with psycopg.connect(postgres_cluster.url(), connect_timeout=10) as conn:
        assert conn.info.server_version >= 130000
        settings: dict[str, str] = dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["port"] == str(postgres_cluster.port)
    assert settings["unix_socket_directories"] == str(postgres_cluster.folder)
    assert (settings["fsync"], settings["synchronous_commit"], settings["full_page_writes"]) == ("off", "off", "off")
    assert settings["max_connections"] == "300"


def test_the_postgres_migrations_mirror_the_sqlite_ones_file_for_file() -> None:
    assert [p.name for p in POSTGRES_FILES] == [p.name for p in SQLITE_FILES]
    for path in POSTGRES_FILES:
        text = re.sub(r"--.*", "", path.read_text(encoding="utf-8"))  # the statements, not the comments
        assert "INSERT OR IGNORE" not in text and "strftime" not in text and "BLOB" not in text, path.name
        assert "ON CONFLICT (version) DO NOTHING" in text, path.name


def test_the_postgres_migrations_give_the_sqlite_schema(postgres_cluster: Cluster) -> None:
    url = postgres_cluster.create_database()
    for path in POSTGRES_FILES:
        _psql_apply(url, path)
    expected, actual = _sqlite_schema(), _postgres_schema(url)
    assert set(actual) == set(expected)
    for table, want in expected.items():
        got = actual[table]
        assert set(got.columns) == set(want.columns), table
        assert (got.indexes, got.primary_key, got.unique) == (want.indexes, want.primary_key, want.unique), table
        for column, (sqlite_type, not_null) in want.columns.items():
            expected_type = _expected_postgres_type(table, column, sqlite_type)
            assert got.columns[column] == (expected_type, not_null), f"{table}.{column}"


def test_the_migrations_record_themselves_and_keep_the_partial_index(postgres_cluster: Cluster) -> None:
    url = postgres_cluster.create_database()
    for path in POSTGRES_FILES:
        _psql_apply(url, path)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, name, checksum FROM schema_migrations ORDER BY version").fetchall()
        predicate = conn.execute(
            "SELECT pg_get_expr(x.indpred, x.indrelid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relname = 'sessions_active'"
        ).fetchone()
        conn.execute(  # the CHECKs came along: a flag is 0 or 1
            "INSERT INTO audit_logs (id, created_at, event_type, success) VALUES ('a', 1, 'x', 1)"
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO audit_logs (id, created_at, event_type, success) VALUES ('b', 1, 'x', 2)")
    assert rows == [(int(p.name[:4]), p.stem[5:], "by-hand") for p in POSTGRES_FILES]
    assert predicate == ("(revoked_at IS NULL)",)


def test_created_databases_are_independent_and_dropped(postgres_cluster: Cluster) -> None:
    first, second = postgres_cluster.create_database(), postgres_cluster.create_database()
    named = postgres_cluster.create_database("named_one")
    assert len({first, second, named}) == 3
    assert named == postgres_cluster.url("named_one")
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE only_here (x integer)")
    with psycopg.connect(second) as conn:
        assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
    held = psycopg.connect(named)  # an open connection does not stop the drop
    try:
        postgres_cluster.drop_database("named_one")
    finally:
        held.close()
    with psycopg.connect(postgres_cluster.url()) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert "named_one" not in names and {first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]} <= names


def test_kill_and_restart_keep_committed_data_on_the_same_port() -> None:
    # Not under pytest's tmp_path: another pytest run on the machine sets its base folder back to
    # 0700, and the postgres user could then no longer reach the data folder.
    folder = Path(tempfile.mkdtemp(prefix="pw-pg-"))
    cluster = Cluster.start(folder / "pg")
    try:
        url = cluster.create_database()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x integer)")
            for i in range(100):  # autocommit: 100 commits, the last ones just before the crash
                conn.execute("INSERT INTO kept VALUES (%s)", (i,))
        cluster.kill()
        assert (folder / "pg" / "data").is_dir()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
        cluster.restart()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (100,)
            assert conn.execute("SELECT current_setting('port')").fetchone() == (str(cluster.port),)
    finally:
        cluster.stop()
    assert not (folder / "pg").exists()
    folder.rmdir()
