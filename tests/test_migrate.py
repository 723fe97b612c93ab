"""The migration runner against real SQLite files: the real migrations where a schema is needed,
small throwaway folders in tmp_path for the runner's edge cases."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from passwordless.platform import migrate
from passwordless.platform.migrate import MigrationError

DESIGN_TABLES = {
    "users",
    "sign_in_tickets",
    "sessions",
    "passkeys",
    "webauthn_challenges",
    "email_queue",
    "webhook_queue",
    "audit_logs",
    "signing_keys",
    "schema_migrations",
}


def make_folder(root: Path, files: dict[str, str]) -> Path:
    folder = root / "migrations"
    folder.mkdir()
    for name, sql in files.items():
        (folder / name).write_text(sql, encoding="utf-8")
    return folder


def copy_of_real_migrations(tmp_path: Path) -> Path:
    return Path(shutil.copytree(migrate.default_dir(), tmp_path / "migrations"))


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def recorded(path: Path) -> list[tuple[int, str, str]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT version, name, checksum FROM schema_migrations ORDER BY version").fetchall()


# --- discover --------------------------------------------------------------------------------


def test_discover_real_folder_in_order() -> None:
    found = migrate.discover(migrate.default_dir())
    versions = [m.version for m in found]
    assert versions[0] == 1 and found[0].name == "init"
    assert versions == sorted(versions) == list(range(1, len(found) + 1))
    for m in found:
        assert (migrate.default_dir() / m.file_name).read_text(encoding="utf-8") == m.sql


def test_discover_sorts_by_version_and_ignores_other_files(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path,
        {"0010_later.sql": "SELECT 1;", "0002_second.sql": "SELECT 1;", "0001_first.sql": "SELECT 1;"},
    )
    (folder / "README.md").write_text("not a migration", encoding="utf-8")
    assert [(m.version, m.name) for m in migrate.discover(folder)] == [
        (1, "first"),
        (2, "second"),
        (10, "later"),
    ]


@pytest.mark.parametrize("bad_name", ["1_init.sql", "0001-init.sql", "0001_Init.sql", "0001_.sql", "init.sql"])
def test_discover_refuses_badly_named_file(tmp_path: Path, bad_name: str) -> None:
    folder = make_folder(tmp_path, {"0001_ok.sql": "SELECT 1;", bad_name: "SELECT 1;"})
    with pytest.raises(MigrationError, match=rf"{bad_name}.*NNNN_name\.sql"):
        migrate.discover(folder)


def test_discover_refuses_duplicate_versions(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {"0003_one.sql": "SELECT 1;", "0003_two.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="two migrations share version 0003"):
        migrate.discover(folder)


def test_discover_refuses_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(MigrationError, match=rf"{missing}.*does not exist"):
        migrate.discover(missing)


# --- apply -----------------------------------------------------------------------------------


def test_apply_to_fresh_file_creates_design_tables_and_records_migrations(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "auth.db"
    known = migrate.discover(migrate.default_dir())

    applied = migrate.apply_to_file(path, known)

    assert applied == list(known)
    assert DESIGN_TABLES <= tables(path)
    assert recorded(path) == [
        (m.version, m.name, hashlib.sha256(m.sql.encode()).hexdigest()) for m in known
    ]


def test_second_apply_does_nothing(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    known = migrate.discover(migrate.default_dir())
    migrate.apply_to_file(path, known)
    before = recorded(path)

    assert migrate.apply_to_file(path, known) == []
    assert recorded(path) == before


def test_edited_migration_is_refused_naming_the_file(tmp_path: Path) -> None:
    folder = copy_of_real_migrations(tmp_path)
    path = tmp_path / "auth.db"
    migrate.apply_to_file(path, migrate.discover(folder))
    init = folder / "0001_init.sql"
    init.write_text(init.read_text(encoding="utf-8") + "\n-- a harmless edit\n", encoding="utf-8")

    with pytest.raises(MigrationError, match=r"0001_init\.sql.*edited"):
        migrate.apply_to_file(path, migrate.discover(folder))


def test_database_with_unknown_version_is_refused(tmp_path: Path) -> None:
    folder = copy_of_real_migrations(tmp_path)
    path = tmp_path / "auth.db"
    (folder / "0099_from_the_future.sql").write_text("CREATE TABLE future (x);", encoding="utf-8")
    migrate.apply_to_file(path, migrate.discover(folder))
    (folder / "0099_from_the_future.sql").unlink()

    with pytest.raises(MigrationError, match="0099_from_the_future.*does not know"):
        migrate.apply_to_file(path, migrate.discover(folder))


def test_failing_migration_rolls_back_entirely(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path,
        {
            "0001_first.sql": "CREATE TABLE first (x);",
            "0002_broken.sql": "CREATE TABLE half_done (x);\nINSERT INTO no_such_table VALUES (1);\n",
        },
    )
    path = tmp_path / "auth.db"

    with pytest.raises(MigrationError, match=r"0002_broken\.sql failed.*no_such_table"):
        migrate.apply_to_file(path, migrate.discover(folder))

    assert "half_done" not in tables(path)
    assert "first" in tables(path)
    assert [(v, n) for v, n, _ in recorded(path)] == [(1, "first")]


def test_concurrent_apply_to_one_new_file_records_each_migration_once(tmp_path: Path) -> None:
    known = migrate.discover(migrate.default_dir())
    for attempt in range(5):
        path = tmp_path / f"auth-{attempt}.db"
        start = threading.Barrier(2)
        results: list[list[migrate.Migration]] = []
        errors: list[BaseException] = []

        def run() -> None:
            start.wait()
            try:
                results.append(migrate.apply_to_file(path, known))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        assert errors == []
        # Each migration is its own transaction, so the two may share the work: between them
        # they apply each migration exactly once.
        applied = sorted(m.version for r in results for m in r)
        assert applied == [m.version for m in known]
        assert [v for v, _, _ in recorded(path)] == [m.version for m in known]


def test_pending_is_empty_when_up_to_date_and_lists_a_deleted_row(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    known = migrate.discover(migrate.default_dir())
    migrate.apply_to_file(path, known)

    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert migrate.pending(conn, known) == []
        conn.execute("DELETE FROM schema_migrations WHERE version = 1")
        assert migrate.pending(conn, known) == [known[0]]


def test_pending_on_empty_database_lists_everything(tmp_path: Path) -> None:
    known = migrate.discover(migrate.default_dir())
    with closing(sqlite3.connect(tmp_path / "auth.db")) as conn:
        assert migrate.pending(conn, known) == list(known)


# --- split_statements ------------------------------------------------------------------------


def code_only(statement: str) -> str:
    """The statement without comments, its whitespace collapsed."""
    return " ".join(re.sub(r"/\*.*?\*/|--[^\n]*", " ", statement, flags=re.S).split())


def test_split_statements_keeps_trigger_body_whole_and_skips_comments_and_blanks() -> None:
    sql = """-- a header comment; with a semicolon

CREATE TABLE t (x);  -- trailing comment

/* a block comment; also with a semicolon */
CREATE TRIGGER t_log AFTER INSERT ON t
BEGIN
    INSERT INTO log VALUES (new.x);
    UPDATE counter SET n = n + 1;
END;


;
-- a final comment
"""
    statements = migrate.split_statements(sql)

    assert [code_only(s) for s in statements] == [
        "CREATE TABLE t (x);",
        "CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.x);"
        " UPDATE counter SET n = n + 1; END;",
    ]
    for statement in statements:
        assert sqlite3.complete_statement(statement)


def test_split_statements_trigger_runs_in_sqlite() -> None:
    sql = """CREATE TABLE t (x);
CREATE TABLE log (x);
CREATE TRIGGER t_log AFTER INSERT ON t
BEGIN
    INSERT INTO log VALUES (new.x);
    INSERT INTO log VALUES (new.x * 10);
END;
INSERT INTO log VALUES ('a;b');
INSERT INTO log VALUES ('-- not a comment');
"""
    with closing(sqlite3.connect(":memory:")) as conn:
        for statement in migrate.split_statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO t VALUES (2)")
        assert [r[0] for r in conn.execute("SELECT x FROM log ORDER BY rowid")] == [
            "a;b",
            "-- not a comment",
            2,
            20,
        ]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE a (x);\nCREATE TABLE b (x)",
        "CREATE TABLE a (x);\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  DELETE FROM a;\n",
        "CREATE TABLE a (x);\nINSERT INTO a VALUES ('unterminated;\n",
    ],
)
def test_split_statements_refuses_incomplete_final_statement(sql: str) -> None:
    with pytest.raises(MigrationError, match="incomplete statement"):
        migrate.split_statements(sql)


def test_split_statements_separates_two_statements_on_one_line() -> None:
    statements = migrate.split_statements("CREATE TABLE a (x); CREATE INDEX a_x ON a (x);\n")
    assert [code_only(s) for s in statements] == ["CREATE TABLE a (x);", "CREATE INDEX a_x ON a (x);"]


def test_split_statements_accepts_a_trailing_block_comment() -> None:
    statements = migrate.split_statements("CREATE TABLE a (x);\n/* the end */\n")
    assert [code_only(s) for s in statements] == ["CREATE TABLE a (x);"]


def test_migrations_applied_by_hand_are_accepted_and_completed(tmp_path: Path) -> None:
    """DESIGN.md: an operator may run `sqlite3 auth.db < migrations/sqlite/0001_init.sql`. Each file
    records itself, so the server then applies only what is left and fills in the checksums."""
    path = tmp_path / "auth.db"
    known = migrate.discover(migrate.default_dir())
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(known[0].sql)  # what the sqlite3 program does with the file
    assert [m.version for m in migrate.apply_to_file(path, known)] == [m.version for m in known[1:]]
    with closing(sqlite3.connect(path)) as conn:
        recorded = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    assert recorded == {m.version: m.checksum for m in known}
