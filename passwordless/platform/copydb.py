"""`passwordless copy-db`: everything in one database copied into another, empty one (SCALE.md):
from the SQLite file to PostgreSQL when a deployment outgrows one server, or any other way round.
Users keep their sessions, passkeys, groups and the apps they let in (OIDC grants and consents): every row is copied as it is (secrets stay hashed, ids and
times unchanged). The target is brought up to date with its own dialect's migrations first, the
copy is one transaction on the target (all or nothing), and the counts are checked before it
commits."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path
from typing import Any

from passwordless.config.kinds import DatabaseUrl
from passwordless.config.settings import DatabaseSettings
from passwordless.platform import storage
from passwordless.platform.db import Connection, connect

# Every table of the schema, parents before the rows that refer to them. schema_migrations is not
# copied: the target records its own dialect's migrations.
TABLES = (
    "users", "sign_in_tickets", "sessions", "rotated_refresh_tokens", "passkeys", "webauthn_challenges",
    "email_queue", "webhook_queue", "audit_logs", "signing_keys",
    "oidc_clients", "oidc_grants", "oidc_codes", "oidc_refresh_tokens", "oidc_access_tokens", "oidc_consents",
    "user_groups", "oidc_backchannel_queue",
)
BATCH = 1000


class CopyRefused(Exception):
    """The copy cannot start or did not check out; nothing was written to the target."""


def settings_for(where: str) -> DatabaseSettings:
    """A database named on the command line: a postgresql:// URL, or a SQLite file path."""
    if where.startswith(("postgresql://", "postgres://")):
        try:
            return DatabaseSettings(url=DatabaseUrl().parse(where))
        except ValueError:
            raise CopyRefused(f"{DatabaseUrl().masked(where)} is not a usable URL: expected {DatabaseUrl.expected}") from None
    if not Path(where).is_file():
        raise CopyRefused(f"{where}: no such database file")
    return DatabaseSettings(path=where)


def copy(source: DatabaseSettings, target: DatabaseSettings) -> dict[str, int]:
    """Copy every row of `source` into the empty `target`; the rows copied per table."""
    if storage.describe(source) == storage.describe(target):
        raise CopyRefused("the source and the target are the same database")
    storage.bring_up_to_date(source)  # the same schema version on both sides
    storage.bring_up_to_date(target)
    with _open(source) as (src, begin_reading), _open(target) as (dst, begin_writing):
        filled = {table: n for table in TABLES if (n := _count(dst, table))}
        if filled:
            listed = ", ".join(f"{table} ({n})" for table, n in filled.items())
            raise CopyRefused(f"{storage.describe(target)} is not empty: {listed}; copy-db copies into an empty database only")
        copied: dict[str, int] = {}
        with begin_reading(immediate=False), begin_writing(immediate=True):  # one snapshot, one transaction
            for table in TABLES:
                copied[table] = _copy_table(src, dst, table)
                if (there := _count(dst, table)) != copied[table]:
                    raise CopyRefused(f"{table}: copied {copied[table]} rows but the target holds {there}")
        return copied


def _copy_table(src: Connection, dst: Connection, table: str) -> int:
    columns = [name for name in _columns(src, table) if name in set(_columns(dst, table))]
    listed = ", ".join(columns)
    insert = f"INSERT INTO {table} ({listed}) VALUES ({', '.join('?' * len(columns))})"
    cursor = src.execute(f"SELECT {listed} FROM {table}")
    copied = 0
    while batch := cursor.fetchmany(BATCH):
        dst.executemany(insert, [tuple(row) for row in batch])
        copied += len(batch)
    return copied


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _columns(conn: Connection, table: str) -> list[str]:
    return [column[0] for column in conn.execute(f"SELECT * FROM {table} WHERE 1 = 0").description or ()]


Begin = Callable[..., AbstractContextManager[Any]]  # begin(immediate=…): one transaction


@contextmanager
def _open(settings: DatabaseSettings) -> Iterator[tuple[Connection, Begin]]:
    if not settings.url:
        with closing(connect(Path(settings.path))) as conn:
            yield conn, lambda immediate: _sqlite_transaction(conn, immediate)
        return
    import psycopg

    from passwordless.platform.db.postgres import PgConnection, configure

    with psycopg.connect(settings.url, autocommit=True) as raw:
        configure(raw)
        raw.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        yield PgConnection(raw), lambda immediate: raw.transaction()


@contextmanager
def _sqlite_transaction(conn: sqlite3.Connection, immediate: bool) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
