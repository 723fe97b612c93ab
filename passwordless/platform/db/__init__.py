"""The storage engines: one SQLite file, written on the event loop's thread (database.py, the
embedded default), or PostgreSQL for more than one server (postgres.py, imported only when
configured: its driver is the optional extra `passwordless[postgres]`). See README.md here.
Services use a `Database` (write, read, lookup); stores are plain functions of a `Connection`."""

from passwordless.platform.db.connection import connect
from passwordless.platform.db.database import SqliteDatabase
from passwordless.platform.db.jobs import DatabaseClosed
from passwordless.platform.db.types import Connection, Database, Dialect, Row, concurrent, dialect

__all__ = ["Connection", "Database", "DatabaseClosed", "Dialect", "Row", "SqliteDatabase", "concurrent", "connect", "dialect"]
