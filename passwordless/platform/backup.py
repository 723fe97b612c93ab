"""Online backup and restore of the database file.

`backup` copies through SQLite's backup API, so the copy is consistent while the server keeps
writing; it is checked with PRAGMA integrity_check before it takes its final name. `restore`
refuses while any server holds the database (servers hold a shared lock on DB.lock), checks the
file it is given, and keeps the current database aside."""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from passwordless.platform import private_files


class BackupError(Exception):
    """Said in one line; the command exits 1."""


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextmanager
def held(database: Path, exclusive: bool) -> Iterator[None]:
    """A lock every server holds shared for its lifetime, and restore holds exclusive."""
    private_files.folder(database.parent)
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"{database} is in use by a running server: stop it first") from None
        yield
    finally:
        os.close(fd)


def backup(database: Path, destination: Path) -> Path:
    if not database.is_file():
        raise BackupError(f"there is no database at {database}")
    if destination.is_dir():
        destination = destination / f"{database.stem}-{time.strftime('%Y%m%d-%H%M%S')}.db"
    if destination.exists():
        raise BackupError(f"{destination} exists already: choose another name")
    partial = destination.with_name(destination.name + ".partial")
    private_files.file(partial)  # a backup holds the signing keys: 0600 before a byte is in it
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    target = sqlite3.connect(partial)
    try:
        source.execute("PRAGMA busy_timeout=5000")
        source.backup(target)  # one step: a consistent snapshot even while the server writes
        target.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        _check(target, partial)
    except sqlite3.Error as exc:
        target.close()
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup failed: {exc}") from None
    finally:
        source.close()
    target.close()
    os.replace(partial, destination)
    return destination


def restore(database: Path, source: Path) -> Path:
    """Put `source` in place of the database; returns where the old one was kept."""
    if not source.is_file():
        raise BackupError(f"there is no file at {source}")
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        _check(conn, source)
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'").fetchone():
            raise BackupError(f"{source} is not a passwordless database")
    except sqlite3.Error as exc:
        raise BackupError(f"{source} is not a readable SQLite database: {exc}") from None
    finally:
        conn.close()
    with held(database, exclusive=True):
        kept = database.with_name(f"{database.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
        if database.exists():
            os.replace(database, kept)
        for suffix in ("-wal", "-shm"):
            side = database.with_name(database.name + suffix)
            if side.exists():
                os.replace(side, kept.with_name(kept.name + suffix))
        private_files.file(database)
        shutil.copyfile(source, database)  # into the 0600 file made above
    return kept


def _check(conn: sqlite3.Connection, path: Path) -> None:
    result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"{path} failed its integrity check: {result}")
