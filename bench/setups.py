"""The setups bench/run.py measures one after the other (an engine, a number of servers and a
uvicorn stack), and how each one's servers, bare baseline and start-up runs are started: every
server through bench/stack.py, on the server core (bench/pinning.py)."""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from engines import DurableCluster
from findings import Findings
from flows import HTTP_FLOWS
from harness import BENCH, BINARY, SERVE, Children, free_port, wait_ready
from other_flows import Startup, measure_startup
from pinning import Pinning
from serve import Server, start_serve
from stack import is_expected, stack_of

SQLITE_ONLY = ("email", "startup")  # email_delivery.py times the SQLite queue; start-up needs no second figure


@dataclass(frozen=True)
class Setup:
    """One engine, number of servers and stack; each setup measures its flows, bare included, alone."""

    label: str
    engine: str  # "sqlite" | "postgres"
    servers: int
    stack: str = "standard"  # bench/stack.py's: "standard" (uvloop + httptools) | "pure" (asyncio + h11)

    @property
    def slug(self) -> str:
        return f"{self.engine}-{self.servers}-{self.stack}"

    def flows(self, asked: list[str]) -> list[str]:
        """The pure stack is measured on bare and the HTTP flows; email and start-up on SQLite."""
        keep = HTTP_FLOWS if self.stack == "pure" else asked
        return [f for f in asked if f in keep and (self.engine == "sqlite" or f not in SQLITE_ONLY)]


ENGINES = {
    "sqlite": [Setup("SQLite, 1 server", "sqlite", 1)],
    "postgres": [Setup("PostgreSQL, 1 server", "postgres", 1), Setup("PostgreSQL, 2 servers", "postgres", 2)],
}
ENGINES["both"] = ENGINES["sqlite"] + ENGINES["postgres"]
STACK_CHOICES = ("standard", "pure", "both")


def setups_for(engine: str, stack: str) -> list[Setup]:
    """--engine's setups on --stack's stacks; with both, the pure stack runs on one server only."""
    out = []
    for setup in ENGINES[engine]:
        if stack in ("standard", "both"):
            out.append(setup)
        if stack == "pure" or (stack == "both" and setup.servers == 1):
            out.append(replace(setup, label=f"{setup.label}, pure-Python stack", stack="pure"))
    return out


def serve_command(pinning: Pinning, stack: str) -> list[str]:
    return pinning.server_command([sys.executable, str(BENCH / "stack.py"), stack])


def start_servers(
    children: Children, args: argparse.Namespace, tmp: Path, sink_port: int, setup: Setup,
    cluster: DurableCluster | None, found: Findings, pinning: Pinning,
) -> list[Server]:
    """The setup's servers, one after the other (the first migrates), on one fresh database."""
    command = serve_command(pinning, setup.stack)
    if setup.engine == "sqlite":
        servers = [start_serve(children, command, tmp / "serve", sink_port)[0]]
    else:
        assert cluster is not None
        db = cluster.new_database(args.pg_synchronous_commit)
        found.notes.append(f"PostgreSQL: {cluster.describe(db)}; a fresh database for this setup")
        secret = secrets.token_urlsafe(32)  # servers on one database share jwt.secret
        servers = [start_serve(children, command, tmp / f"serve-{setup.slug}-{i}", sink_port, db, secret)[0]
                   for i in range(setup.servers)]
    for server in servers:
        seen_as(found, setup.stack, "serve", stack_of(server.log))
    return servers


def start_bare(children: Children, tmp: Path, setup: Setup, found: Findings, pinning: Pinning) -> int:
    """bench/bare_app.py on the setup's stack and the server core; its port."""
    port, log = free_port(), tmp / "bare.log"
    tmp.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        bare = children.start([*serve_command(pinning, setup.stack), "bare", "--port", str(port)],
                              stdout=out, stderr=out)
    wait_ready(bare, port, "/", log)
    seen_as(found, setup.stack, "bare", stack_of(log))
    return port


def seen_as(found: Findings, stack: str, what: str, seen: str) -> None:
    """Record the stack a server said it ran on; a note when it is not the one asked for (say,
    standard without uvloop or httptools installed: uvicorn then falls back quietly)."""
    found.stacks_seen.append(f"{what}: {seen}")
    if not is_expected(stack, seen):
        found.notes.append(f"{what} ran on {seen}, NOT the {stack} stack asked for: its figures are not the {stack}"
                           " stack's")


def measure_startups(
    children: Children, args: argparse.Namespace, tmp: Path, sink_port: int, found: Findings, pinning: Pinning
) -> None:
    """The venv's console script and the one-file executable, as installed (standard stack)."""
    print("start-up to readiness", flush=True)
    found.startups.append(measure_startup(children, pinning.server_command([str(SERVE)]),
                                          "venv (.venv/bin/passwordless)", tmp / "startup-venv", sink_port,
                                          args.startup_repeat))
    if BINARY.exists():
        found.startups.append(measure_startup(children, pinning.server_command([str(BINARY)]),
                                              "executable (dist/passwordless)", tmp / "startup-binary", sink_port,
                                              args.startup_repeat))
        found.startups[-1].size_mb = BINARY.stat().st_size / 2**20
        built = datetime.fromtimestamp(BINARY.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        found.notes.append(f"dist/passwordless was built {built}: it may predate the working tree")
    else:
        found.startups.append(Startup("executable (dist/passwordless)", failure="not built — scripts/build-binary"))
    for s in found.startups:
        print(f"  {s.label}: {s.failure or ', '.join(f'{x:.2f} s' for x in s.seconds)}", flush=True)
