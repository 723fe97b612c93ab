"""The database a bench server runs on: a SQLite file (the embedded default) or a database of a
throwaway PostgreSQL cluster the bench starts itself (SCALE.md). Each knows how to name itself in
serve's config, how to write prepared rows in batches, and how to answer a small query.

The cluster is tests/support/postgres.py's, with durability on (fsync, full_page_writes and
synchronous_commit as production runs them; the tests turn them off): see DurableCluster.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from passwordless.platform.db import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests.support
from tests.support import postgres as pg  # noqa: E402

BATCH = 2000  # rows per write transaction: short enough not to hold up the server's writer long

WriteOne = Callable[[Any, int], None]  # (conn as the stores take it, index)


class Db(Protocol):
    @property
    def engine(self) -> str:
        """"sqlite" or "postgres"."""

    def config(self) -> str:
        """The body of serve's [database] table."""

    def batches(self, count: int, write_one: WriteOne) -> None:
        """Call write_one(conn, i) for i in range(count), BATCH calls per transaction."""

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement."""

    def notes(self) -> list[str]:
        """What the end of a run should say about the database."""


@dataclass(frozen=True)
class SqliteDb:
    path: Path
    engine: str = "sqlite"

    def config(self) -> str:
        return f'path = "{self.path}"'

    def batches(self, count: int, write_one: WriteOne) -> None:
        # The server may be running: its database is in WAL mode, and every batch is one short
        # write transaction that waits (busy_timeout) for the server's writer rather than failing.
        conn = connect(self.path)
        try:
            for start in range(0, count, BATCH):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for i in range(start, min(count, start + BATCH)):
                        write_one(conn, i)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        finally:
            conn.close()

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5) as conn:
            return list(conn.execute(sql))

    def notes(self) -> list[str]:
        # The WAL file keeps the largest size it reached: checkpoints that fall behind show here.
        wal = Path(f"{self.path}-wal")
        if not wal.exists():
            return ["serve's WAL file: none"]
        return [f"serve's WAL file at the end: {wal.stat().st_size / 1e6:.1f} MB"
                f" (database {self.path.stat().st_size / 1e6:.1f} MB)"]


@dataclass(frozen=True)
class PostgresDb:
    url: str
    engine: str = "postgres"

    def config(self) -> str:
        return f'url = "{self.url}"'

    def batches(self, count: int, write_one: WriteOne) -> None:
        import psycopg

        from passwordless.platform.db.postgres import PgConnection, configure

        with psycopg.connect(self.url, connect_timeout=10) as raw:
            configure(raw)
            conn = PgConnection(raw)
            for start in range(0, count, BATCH):
                with raw.transaction():
                    for i in range(start, min(count, start + BATCH)):
                        write_one(conn, i)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            return list(conn.execute(sql))

    def notes(self) -> list[str]:
        rows = self.query("SELECT pg_database_size(current_database())")
        return [f"PostgreSQL database at the end: {rows[0][0] / 1e6:.1f} MB"]


# --- the throwaway cluster ----------------------------------------------------------------------

# Production durability: the tests run their clusters with all three off.
DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}


class DurableCluster(pg.Cluster):
    """tests/support/postgres.py's cluster with production durability. The tests' own settings
    stay theirs: only this subclass's restart() passes other ones."""

    def restart(self) -> None:
        settings = {**pg.SETTINGS, **DURABLE}
        options = [f"-p {self.port}", f"-k {shlex.quote(str(self.folder))}"]
        options += [f"-c {key}={value}" for key, value in settings.items()]
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.folder / "server.log"), "-o", " ".join(options))

    def new_database(self, synchronous_commit: str) -> PostgresDb:
        """A fresh database; synchronous_commit is set on it (a per-database setting wins over
        the server's)."""
        import psycopg
        from psycopg import sql

        url = self.create_database()
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                sql.Identifier(name), sql.Literal(synchronous_commit)))
        return PostgresDb(url)

    def describe(self, db: PostgresDb) -> str:
        import psycopg

        names = ("server_version", "fsync", "full_page_writes", "synchronous_commit", "shared_buffers")
        with psycopg.connect(db.url, autocommit=True, connect_timeout=10) as conn:
            values = [str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names]  # type: ignore[index]
        return ", ".join(f"{n} {v}" for n, v in zip(names, values))


    def cpu_seconds(self) -> float:
        """CPU time the cluster has used so far: the postmaster's, its live processes' and those it
        has waited for (its connections' backends). It is not a child of ours: pg_ctl starts it."""
        try:
            pid = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")

        def used(p: int, waited: bool) -> float:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return 0.0
            own = int(fields[11]) + int(fields[12])  # utime, stime
            return (own + (int(fields[13]) + int(fields[14]) if waited else 0)) / ticks  # + cutime, cstime

        try:
            children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            children = []
        return used(pid, True) + sum(used(c, False) for c in children)


def start_cluster() -> DurableCluster:
    """A fresh cluster in a short temp folder (its Unix socket path must stay short)."""
    cluster = DurableCluster.start(Path(tempfile.mkdtemp(prefix="pwb-")))
    assert isinstance(cluster, DurableCluster)
    return cluster
