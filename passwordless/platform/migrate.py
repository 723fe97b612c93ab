"""Forward-only schema migrations: `migrations/<dialect>/NNNN_name.sql` (sqlite, postgres), applied
in order, each in its own transaction, and recorded in `schema_migrations` with a checksum so an
edited migration that was already applied is refused instead of silently diverging."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from passwordless.platform import private_files
from passwordless.platform.db import Connection, Dialect, connect, dialect

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)"""


BY_HAND = "by-hand"  # what a migration file records when it is run with the sqlite3 program


class MigrationError(Exception):
    """The database and the migrations on disk disagree, or a migration failed."""


class DatabaseAhead(MigrationError):
    """The database has migrations this version does not know: a newer version migrated it."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


MIGRATION_LOCK = 7_234_571_001  # the pg_advisory_lock key: one process migrates at a time


def default_dir(dialect: Dialect = "sqlite") -> Path:
    """The migrations of a dialect inside the package: `passwordless/migrations` is a link to the
    repository's top-level `migrations/` in a clone, a copy in an installed wheel and in the
    executable (build.spec puts them there too). One folder per dialect (SCALE.md)."""
    return Path(__file__).parent.parent / "migrations" / dialect


def discover(directory: Path) -> tuple[Migration, ...]:
    if not directory.is_dir():
        raise MigrationError(f"migrations folder {directory} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(match[1])
        if version in found:
            raise MigrationError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, match[2], path.read_text(encoding="utf-8"))
    return tuple(found[v] for v in sorted(found))


def pending(conn: Connection, known: tuple[Migration, ...]) -> list[Migration]:
    """The migrations still to apply; refuses a database that has diverged from them."""
    applied = {row[0]: (row[1], row[2]) for row in _applied_rows(conn)}
    by_version = {m.version: m for m in known}
    for version, (name, checksum) in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise DatabaseAhead(
                f"the database has migration {version:04d}_{name} that this version does not know "
                "(was it opened by a newer passwordless?)"
            )
        if checksum != BY_HAND and migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.file_name} was edited after it was applied "
                f"(checksum {migration.checksum[:12]} ≠ recorded {checksum[:12]}); "
                "restore the original file and add a new migration instead"
            )
    return [m for m in known if m.version not in applied]


def _applied_rows(conn: Connection) -> list[tuple[int, str, str]]:
    exists = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        if dialect(conn) == "sqlite" else "SELECT to_regclass('schema_migrations') IS NOT NULL"
    ).fetchone()[0]
    if not exists:
        return []
    return [tuple(r) for r in conn.execute("SELECT version, name, checksum FROM schema_migrations")]


def apply(conn: sqlite3.Connection, known: tuple[Migration, ...]) -> list[Migration]:
    """Apply pending migrations, each in its own BEGIN IMMEDIATE transaction, so two processes
    starting on one file never apply the same migration twice."""
    done: list[Migration] = []
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_CREATE_TABLE)
            todo = pending(conn, known)
            _record_checksums_of_hand_applied(conn, known)
            if todo:
                _run(conn, todo[0])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if not todo:
            return done
        done.append(todo[0])


def _record_checksums_of_hand_applied(conn: Connection, known: tuple[Migration, ...]) -> None:
    for m in known:
        conn.execute(
            "UPDATE schema_migrations SET checksum = ? WHERE version = ? AND checksum = ?",
            (m.checksum, m.version, BY_HAND),
        )


def apply_to_file(path: Path, known: tuple[Migration, ...]) -> list[Migration]:
    """Create the database file if needed (and its folder) and bring it up to date."""
    private_files.database(path)
    conn = connect(path)
    try:
        return apply(conn, known)
    finally:
        conn.close()


def apply_to_postgres(url: str, known: tuple[Migration, ...]) -> list[Migration]:
    """Bring a PostgreSQL database up to date, each migration in its own transaction (PostgreSQL's
    DDL is transactional). Servers starting together on an empty database take turns: each
    transaction first waits for an advisory lock held until it ends, then looks at what is still
    pending, so each migration is applied once. (A lock held for the transaction, not the session:
    through PgBouncer in transaction mode a session lock could outlive its connection.)"""
    import psycopg

    from passwordless.platform.db.postgres import PgConnection

    with psycopg.connect(url, autocommit=True, connect_timeout=10, prepare_threshold=None) as raw:
        conn = PgConnection(raw)
        done: list[Migration] = []
        while True:
            with raw.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
                conn.execute(_CREATE_TABLE.replace("applied_at INTEGER", "applied_at BIGINT"))
                todo = pending(conn, known)
                _record_checksums_of_hand_applied(conn, known)
                if todo:
                    _run(conn, todo[0])
            if not todo:
                return done
            done.append(todo[0])


def _run(conn: Connection, migration: Migration) -> None:
    # On PostgreSQL the file goes to psycopg as it is, no placeholders in it (a `?` in a comment is no parameter).
    run = conn.execute if dialect(conn) == "sqlite" else getattr(conn, "raw").execute
    try:
        for statement in split_statements(migration.sql):
            run(statement)
    except Exception as exc:  # sqlite3.Error or psycopg.Error: the statement's own words
        raise MigrationError(f"migration {migration.file_name} failed: {exc}") from None
    # The file records itself (for `sqlite3 auth.db < file`, `psql -f file`); this puts in the real checksum.
    conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (version) DO UPDATE SET name = excluded.name, checksum = excluded.checksum,"
        " applied_at = excluded.applied_at",
        (migration.version, migration.name, migration.checksum, int(time.time())),
    )


def split_statements(sql: str) -> list[str]:
    """Complete SQL statements, in order. sqlite3.complete_statement decides where one ends, so
    a semicolon inside a string, a comment or a trigger body does not split it."""
    statements, start = [], 0
    for end, char in enumerate(sql):
        if char == ";" and sqlite3.complete_statement(sql[start : end + 1]):
            statement = sql[start : end + 1].strip()
            if _without_comments(statement).strip(" ;\n\t"):
                statements.append(statement)
            start = end + 1
    if _without_comments(sql[start:]).strip():
        raise MigrationError("a migration ends with an incomplete statement")
    return statements


def _without_comments(sql: str) -> str:
    return re.sub(r"/\*.*?\*/|--[^\n]*", "", sql, flags=re.S)
