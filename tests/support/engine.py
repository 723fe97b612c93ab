"""Which engine the suite runs on: SQLite (the default) or, with PASSWORDLESS_TEST_ENGINE=postgres,
a real PostgreSQL server that the suite starts itself (tests/support/postgres.py). Every test that
builds a configuration through the shared fixtures (make_config, serving) then gets a fresh
database of its own on that server, so the same tests prove both engines (SCALE.md)."""

from __future__ import annotations

import atexit
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path
from typing import Any, Protocol

from passwordless.config.settings import Config
from passwordless.platform.db import Connection
from tests.support.postgres import Cluster

ENGINE = os.environ.get("PASSWORDLESS_TEST_ENGINE", "sqlite")
if ENGINE not in ("sqlite", "postgres"):
    raise RuntimeError(f"PASSWORDLESS_TEST_ENGINE={ENGINE!r}: expected sqlite or postgres")
ON_POSTGRES = ENGINE == "postgres"

# With database.url every server must share jwt.secret (configuration refuses it otherwise).
SHARED_SECRET = "multi-server-test-secret-0123456789abcdef"

_cluster: Cluster | None = None
_databases: dict[Path, str] = {}


def cluster() -> Cluster:
    """The suite's one PostgreSQL cluster, started on first use and stopped when the run ends."""
    global _cluster
    if _cluster is None:
        folder = Path(tempfile.mkdtemp(prefix="pw-pg-"))
        _cluster = Cluster.start(folder)
        atexit.register(_cluster.stop)
    return _cluster


def database_section(folder: Path) -> str:
    """The [database] section of a test's configuration: a file in `folder` on SQLite; a fresh
    PostgreSQL database too on PostgreSQL (the path still places the outbox and dev files)."""
    text = f'[database]\npath = "{folder / "auth.db"}"\n'
    if ON_POSTGRES:
        if folder not in _databases:  # one folder, one database: as its one SQLite file would be
            _databases[folder] = cluster().create_database()
        text += f'url = "{_databases[folder]}"\n'
    return text


def database_url(section: str) -> str | None:
    """The PostgreSQL URL of a [database] section made by `database_section`, if any."""
    for line in section.splitlines():
        if line.startswith("url = "):
            return line.split('"')[1]
    return None


def database_url_in(folder: Path) -> str | None:
    """The PostgreSQL URL in the config.toml that `serving` wrote in `folder`, if any."""
    config = folder / "config.toml"
    return database_url(config.read_text(encoding="utf-8")) if config.exists() else None


def with_shared_secret(toml: str) -> str:
    """On PostgreSQL, the configuration with a jwt.secret (every server on one database must share
    one, and configuration refuses database.url without it) unless the test sets one itself. In
    the file, not the environment, so `passwordless` commands run on the same file find it too."""
    if not ON_POSTGRES:
        return toml
    if "[jwt]" not in toml:
        return f'{toml}\n[jwt]\nsecret = "{SHARED_SECRET}"\n'
    head, jwt = toml.split("[jwt]", 1)
    table = jwt.split("\n[", 1)[0]
    if any(line.strip().startswith("secret") for line in table.splitlines()):
        return toml
    return f'{head}[jwt]\nsecret = "{SHARED_SECRET}"{jwt}'


class Stored(Protocol):
    """Where a running server keeps its data (a LiveServer): the SQLite file, or the PostgreSQL URL."""

    db: Path
    db_url: str | None


def connection(config: Config) -> AbstractContextManager[Connection]:
    """A separate connection to the app's database (see `connect`)."""
    return connect(Path(config.database.path), config.database.url or None)


def connection_of(server: Stored) -> AbstractContextManager[Connection]:
    """A separate connection to a running server's database (see `connect`)."""
    return connect(server.db, server.db_url)


@contextmanager
def connect(path: Path, url: str | None) -> Iterator[Connection]:
    """A connection committing each statement, rows readable by column name: for tests that look
    at, or tamper with, what the server stored."""
    if not url:
        import sqlite3

        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.row_factory = sqlite3.Row
            yield conn
        return
    import psycopg

    from passwordless.platform.db.postgres import PgConnection, configure

    with psycopg.connect(url, autocommit=True) as raw:
        configure(raw)
        yield PgConnection(raw)


def query(server: Stored, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of a running server's database, as tuples."""
    with connection_of(server) as conn:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]


def as_dict(row: Any) -> dict[str, Any]:
    return {key: row[key] for key in row.keys()}
