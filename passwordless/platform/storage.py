"""Which engine the configuration names, brought up to date and opened: the SQLite file of
`database.path` (the embedded default), or the PostgreSQL database of `database.url`."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

from passwordless.config.settings import DatabaseSettings
from passwordless.platform import migrate
from passwordless.platform.db import Database, Dialect, SqliteDatabase


def is_database_error(exc: BaseException) -> bool:
    """Whether either engine raised it (the database refused, or could not be reached). psycopg
    is looked up only if something imported it: SQLite users never pay for loading it."""
    psycopg = sys.modules.get("psycopg")
    return isinstance(exc, sqlite3.Error) or (psycopg is not None and isinstance(exc, psycopg.Error))


class DriverMissing(Exception):
    """database.url is set but the PostgreSQL driver is not installed."""


def dialect_of(settings: DatabaseSettings) -> Dialect:
    return "postgres" if settings.url else "sqlite"


def describe(settings: DatabaseSettings) -> str:
    """The database as an operator should see it in a message: the file, or the URL without its password."""
    if not settings.url:
        return settings.path
    from passwordless.config.kinds import DatabaseUrl

    return str(DatabaseUrl().masked(settings.url))


def migrations(settings: DatabaseSettings) -> tuple[migrate.Migration, ...]:
    return migrate.discover(migrate.default_dir(dialect_of(settings)))


def bring_up_to_date(settings: DatabaseSettings) -> list[migrate.Migration]:
    """Create the database if needed (SQLite) and apply the pending migrations."""
    known = migrations(settings)
    if settings.url:
        _need_driver()
        return migrate.apply_to_postgres(settings.url, known)
    return migrate.apply_to_file(Path(settings.path), known)


async def open_database(settings: DatabaseSettings) -> Database:
    if settings.url:
        _need_driver()
        from passwordless.platform.db.postgres import PostgresDatabase

        return await PostgresDatabase.open(settings.url, settings.pool_size)
    return await SqliteDatabase.open(Path(settings.path))


async def open_migrated(settings: DatabaseSettings) -> Database:
    await asyncio.to_thread(bring_up_to_date, settings)
    return await open_database(settings)


def _need_driver() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise DriverMissing(
            "database.url names PostgreSQL, but its driver is not installed: pip install 'passwordless[postgres]'"
        ) from None
