"""A throwaway PostgreSQL cluster for the tests (SCALE.md): Debian's server binaries, `initdb` in a
folder of the test's, the server on 127.0.0.1 and a free port, its socket in that folder, no
durability (fsync off). Run as the `postgres` user when the tests run as root, since initdb and
postgres refuse root."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.processes import free_port

# The server's settings: reachable over TCP on 127.0.0.1 only, fast rather than durable, and room
# for several test servers with their pools on one cluster.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}
OS_USER = "postgres"  # who runs the server when the tests run as root
SUPERUSER = "postgres"  # the database superuser initdb makes; trusted, no password
_SOCKET_PATH_MAX = 100  # a Unix socket path longer than ~107 bytes cannot be bound


class ClusterError(Exception):
    """The cluster could not be made, started or stopped; the message carries what the tools said."""


def _find_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin with an initdb, else pg_config's bindir."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    numbered = [p for p in found if re.fullmatch(r"\d+(\.\d+)?", p.parent.name)]
    if numbered:
        return max(numbered, key=lambda p: tuple(int(n) for n in p.parent.name.split(".")))
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(out.stdout.strip())
        if out.returncode == 0 and (bindir / "initdb").is_file():
            return bindir
    return None


_FOUND = _find_binaries()
BINARIES: Path  # where initdb, pg_ctl and psql are; reading it raises ClusterError when there are none


def __getattr__(name: str) -> Path:
    if name == "BINARIES":
        return _binaries()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _binaries() -> Path:
    if _FOUND is None:
        raise ClusterError(
            "no PostgreSQL server binaries (no /usr/lib/postgresql/*/bin/initdb, and pg_config names none): "
            "`scripts/setup test` installs Debian's postgresql, or run: apt-get install postgresql"
        )
    return _FOUND


def available() -> bool:
    """Whether a cluster can be started here (the server binaries are installed)."""
    return _FOUND is not None


def _as_root() -> bool:
    return os.geteuid() == 0


def _run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a server program, as the postgres user when we are root; never raises on its exit code."""
    command = ["runuser", "-u", OS_USER, "--", *args] if _as_root() else list(args)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def _prepare_folder(folder: Path) -> None:
    """Create the folder; as root, hand it to the postgres user and let that user reach it (a
    folder under pytest's 0700 temporary root is out of its reach otherwise: this adds only the
    search bit, o+x, to the ancestors that lack it)."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(str(folder)) + len("/.s.PGSQL.65535") > _SOCKET_PATH_MAX:
        raise ClusterError(f"folder path too long for the server's Unix socket: {folder}")
    if not _as_root():
        return
    try:
        user = pwd.getpwnam(OS_USER)
    except KeyError:
        raise ClusterError(f"running as root needs the {OS_USER!r} OS user (Debian's postgresql makes it)") from None
    os.chown(folder, user.pw_uid, user.pw_gid)
    folder.chmod(0o700)
    for parent in folder.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


@dataclass(frozen=True)
class Cluster:
    port: int
    folder: Path

    @classmethod
    def start(cls, folder: Path) -> Cluster:
        """initdb in `folder`/data, then start the server on 127.0.0.1 and a free port."""
        folder = folder.absolute()
        _prepare_folder(folder)
        initdb = _run(
            str(_binaries() / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", SUPERUSER,
            "-E", "UTF8", "--locale=C", "--no-sync", cwd=folder,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise ClusterError(f"initdb failed in {folder}:\n{initdb.stdout}{initdb.stderr}")
        for attempt in range(3):  # another process may take the free port before the server binds it
            cluster = cls(free_port(), folder)
            try:
                cluster.restart()
                return cluster
            except ClusterError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """CREATE DATABASE `name` (a fresh random one when None); returns its URL."""
        name = name or f"test_{secrets.token_hex(6)}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE, closing whatever connections it still has."""
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        """Stop the server (fast: connections closed, transactions rolled back), then remove the folder."""
        if self._running():
            self._pg_ctl("stop", "-m", "fast")
        shutil.rmtree(self.folder, ignore_errors=True)

    def kill(self) -> None:
        """Stop the server as a crash would (immediate); the data folder stays, for restart().
        What was committed survives it, as on a durable server: the write-ahead log is flushed
        first, since with synchronous_commit=off an immediate stop loses the last commits."""
        self._flush_wal()
        self._pg_ctl("stop", "-m", "immediate")

    def restart(self) -> None:
        """Start the server again (after kill(), or the first time), on the same port."""
        options = [f"-p {self.port}", f"-k {shlex.quote(str(self.folder))}"]
        options += [f"-c {key}={value}" for key, value in SETTINGS.items()]
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.folder / "server.log"), "-o", " ".join(options))

    def _pg_ctl(self, *args: str) -> None:
        done = _run(str(_binaries() / "pg_ctl"), "-D", str(self.folder / "data"), *args, cwd=self.folder, timeout=90)
        if done.returncode != 0:
            raise ClusterError(f"pg_ctl {' '.join(args)} failed:\n{done.stdout}{done.stderr}{self._log_tail()}")

    def _running(self) -> bool:
        status = _run(str(_binaries() / "pg_ctl"), "-D", str(self.folder / "data"), "status", cwd=self.folder)
        return status.returncode == 0

    def _flush_wal(self) -> None:
        """CHECKPOINT writes out the log up to now. (A synchronous commit of a transaction that
        writes nothing is not enough: PostgreSQL flushes only for commits that wrote to the log.)"""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute("CHECKPOINT")

    def _admin(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.folder / "server.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "server.log:\n" + "\n".join(text.splitlines()[-lines:])
