"""The storage engine: one SQLite file, written on the event loop's thread (see README.md here).
Services use `Database` (write, read, lookup); stores are plain functions of a connection."""

from passwordless.platform.db.connection import connect
from passwordless.platform.db.database import Database
from passwordless.platform.db.jobs import DatabaseClosed

__all__ = ["Database", "DatabaseClosed", "connect"]
