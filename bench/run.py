"""Issue 9's benchmark, in one command: throughput, latency, memory and start-up of a real
`passwordless serve`, each throughput against a bare Starlette app measured in the same run.

    .venv/bin/python bench/run.py [--engine sqlite|postgres|both] [--duration 5] [--repeat 3] [--warmup 2]
                                  [--only me,bare] [--soak 300] [--pg-synchronous-commit on|off]

Each engine setup is measured alone, its own bare baseline included, one after the other:
SQLite with one server; PostgreSQL with one server, then two servers on one database
(--engine both, the default, runs all three). PostgreSQL runs on a throwaway cluster the bench
starts itself (tests/support/postgres.py's, with production durability: bench/engines.py), a
fresh database per setup, serve configured with `[database] url` and a shared jwt.secret,
everything else as for SQLite. Two servers: one wrk (and one passkey client) per server at once,
each with half the threads and connections, their counts summed. email (it times the SQLite
queue) and start-up run with SQLite only.

What it starts (all on 127.0.0.1, all stopped by PID on the way out, even on an error or Ctrl+C):
- an SMTP sink (bench/smtp_sink.py, its own process, as a mail server is);
- `.venv/bin/passwordless serve`, one process, with a production config in a temp dir: an https
  public_url (the server itself listens on plain http), SMTP to the sink, sign-up on, and rate
  limits set far out of the way but still enabled, so the limiter's code runs;
- bench/bare_app.py: one Starlette route under uvicorn, run the same way (the baseline);
- wrk (-t2 -c32) with bench/wrk/flow.lua for the HTTP flows, bench/passkey_load.py (32 workers)
  for passkey sign-in.

Flows: bare (GET / on the baseline), magic_link (a new address each request), verify and
code_verify (tickets written beforehand straight into the database, each spent once), refresh
(sessions written beforehand, each token rotated once), me (one access token), passkey (options +
verify ceremonies), email (queue vs raw aiosmtplib, from bench/email_delivery.py). Each: a
warm-up, then --repeat timed runs; medians are reported. Every non-2xx answer and socket error is
counted and shown; a flow with errors is not a valid figure. Also: idle RSS, RSS under load,
time to readiness of the venv and of dist/passwordless, the executable's size, and with --soak a
mixed load with RSS sampled every 10 s.

Prints a table and writes it, with a description of the machine, to bench/RESULTS.md. Asserts
nothing: exits 0 unless it could not run.

This file is the entry point and the order of the run (measure, main); the parts live beside it:
harness.py (child processes, readiness, RSS, the SMTP sink, wrk), serve.py (serve's config,
start-up, mail queue, /metrics), flows.py (the HTTP flows), other_flows.py (passkey, email,
start-up, soak) and report.py (tables, machine, bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from engines import DurableCluster, start_cluster
from flows import ALL_FLOWS, HTTP_FLOW_SPECS, HTTP_FLOWS, FlowResult, guarded, run_http_flow
from harness import (
    BENCH,
    BINARY,
    RESULTS,
    ROOT,
    SERVE,
    BenchError,
    Children,
    RssSampler,
    call,
    free_port,
    rss_mb,
    signals_as_interrupt,
    sink_count,
    start_sink,
    tail,
    wait_ready,
    wrk,
)
from other_flows import Startup, measure_startup, run_email, run_passkey, run_soak
from report import Findings, busy_seconds, cpu_busy, own_seconds, report, write_results
from serve import Server, drain_mail, log_findings, mail_statuses, start_serve

# --- the run ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    # wrk takes whole seconds only.
    parser.add_argument("--duration", type=int, default=5, help="seconds per timed run (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per flow; medians are reported (default 3)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per flow (default 2)")
    parser.add_argument("--only", default="", help=f"a comma list of: {', '.join(ALL_FLOWS)} (default: all)")
    parser.add_argument("--soak", type=int, default=0, help="seconds of mixed load, RSS every 10 s (default 0: off)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections, passkey workers (default 32)")
    parser.add_argument("--email-messages", type=int, default=2000)
    parser.add_argument("--email-concurrency", type=int, default=4)
    parser.add_argument("--startup-repeat", type=int, default=3)
    parser.add_argument("--engine", choices=sorted(SETUPS), default="both",
                        help="sqlite (1 server), postgres (1 and 2 servers on a throwaway cluster) or both (default)")
    parser.add_argument("--pg-synchronous-commit", choices=("on", "off"), default="on",
                        help="PostgreSQL's synchronous_commit for the bench's databases (default on, as production)")
    parser.add_argument("--no-results", action="store_true", help="print the table only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    only = [f.strip() for f in args.only.split(",") if f.strip()] or list(ALL_FLOWS)
    unknown = [f for f in only if f not in ALL_FLOWS]
    if unknown:
        parser.error(f"unknown flow(s) {', '.join(unknown)}; expected: {', '.join(ALL_FLOWS)}")
    args.flows = [f for f in ALL_FLOWS if f in only]
    if args.repeat < 1 or args.duration < 1 or args.warmup < 1 or args.connections < args.threads:
        parser.error("expected --repeat >= 1, --duration >= 1, --warmup >= 1, --connections >= --threads")
    return args



def measure_startups(children: Children, args: argparse.Namespace, tmp: Path, sink_port: int, found: Findings) -> None:
    print("start-up to readiness", flush=True)
    found.startups.append(measure_startup(
        children, SERVE, "venv (.venv/bin/passwordless)", tmp / "startup-venv", sink_port, args.startup_repeat))
    if BINARY.exists():
        found.startups.append(measure_startup(
            children, BINARY, "executable (dist/passwordless)", tmp / "startup-binary", sink_port, args.startup_repeat))
        found.startups[-1].size_mb = BINARY.stat().st_size / 2**20
        built = datetime.fromtimestamp(BINARY.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        found.notes.append(f"dist/passwordless was built {built}: it may predate the working tree")
    else:
        found.startups.append(Startup("executable (dist/passwordless)", failure="not built — scripts/build-binary"))
    for s in found.startups:
        print(f"  {s.label}: {s.failure or ', '.join(f'{x:.2f} s' for x in s.seconds)}", flush=True)


@dataclass(frozen=True)
class Setup:
    """One engine and number of servers; each setup measures its flows, bare included, alone."""

    label: str
    engine: str  # "sqlite" | "postgres"
    servers: int

    @property
    def slug(self) -> str:
        return f"{self.engine}-{self.servers}"


SETUPS = {
    "sqlite": [Setup("SQLite, 1 server", "sqlite", 1)],
    "postgres": [Setup("PostgreSQL, 1 server", "postgres", 1), Setup("PostgreSQL, 2 servers", "postgres", 2)],
}
SETUPS["both"] = SETUPS["sqlite"] + SETUPS["postgres"]
SQLITE_ONLY = ("email", "startup")  # email_delivery.py times the SQLite queue; start-up needs no second figure


def start_servers(
    children: Children, args: argparse.Namespace, tmp: Path, sink_port: int, setup: Setup,
    cluster: DurableCluster | None, found: Findings,
) -> list[Server]:
    """The setup's servers, one after the other (the first migrates), on one fresh database."""
    if setup.engine == "sqlite":
        return [start_serve(children, SERVE, tmp / "serve", sink_port)[0]]
    assert cluster is not None
    db = cluster.new_database(args.pg_synchronous_commit)
    found.notes.append(f"PostgreSQL: {cluster.describe(db)}; a fresh database for this setup")
    secret = secrets.token_urlsafe(32)  # servers on one database share jwt.secret
    return [start_serve(children, SERVE, tmp / f"serve-{setup.slug}-{i}", sink_port, db, secret)[0]
            for i in range(setup.servers)]


def measure(
    args: argparse.Namespace, children: Children, tmp: Path, setup: Setup, cluster: DurableCluster | None
) -> Findings:
    flows: list[str] = [f for f in args.flows if setup.engine == "sqlite" or f not in SQLITE_ONLY]
    found = Findings(flows, os.getloadavg(), 0.0, label=setup.label)
    started_at = time.perf_counter()
    sink, sink_port = start_sink(children)
    if "startup" in flows:
        measure_startups(children, args, tmp, sink_port, found)  # first, while nothing else runs

    servers: list[Server] = []
    if any(f in flows for f in (*HTTP_FLOWS[1:], "passkey")) or args.soak > 0:
        servers = start_servers(children, args, tmp, sink_port, setup, cluster, found)
        for server in servers:
            call(server.port, "GET", "/health")  # the one warm-up request
        time.sleep(0.5)
        found.idle_mb = rss_mb(servers[0].process.pid)
        for server in servers:
            print(f"serve on 127.0.0.1:{server.port} (pid {server.process.pid}, {setup.label})", flush=True)
        print(f"  idle RSS {found.idle_mb:.1f} MB", flush=True)
    bare_port = 0
    if "bare" in flows:
        bare_port = free_port()
        bare = children.start([sys.executable, str(BENCH / "bare_app.py"), "--port", str(bare_port)])
        wait_ready(bare, bare_port, "/", None)

    with RssSampler(servers[0].process.pid if servers else os.getpid()) as sampler:
        measure_flows(children, args, flows, servers, bare_port, found)
        if servers:
            found.load_mb = sampler.max_mb
        if args.soak > 0 and setup.engine == "sqlite" and servers_alive(servers, found, "an earlier flow"):
            print(f"soak for {args.soak} s", flush=True)
            found.soak = run_soak(children, args, servers[0])
            servers_alive(servers, found, "the soak")

    if "email" in flows:
        print("email: queue vs raw aiosmtplib", flush=True)
        for server in servers:
            if server.process.poll() is None:
                drain_mail(server)  # serve's own worker stays idle while the email paths are timed
        found.results.append(run_email(args))

    if servers:
        stop_servers(children, servers, sink, found)
    children.stop_all()
    found.seconds = time.perf_counter() - started_at
    return found


def servers_alive(servers: list[Server], found: Findings, after: str) -> bool:
    """Whether every server still runs; if one died, say so once, with the end of its log."""
    for server in servers:
        if server.process.poll() is not None:
            if not any(n.startswith("serve exited") for n in found.notes):
                found.notes.append(f"serve exited with {server.process.returncode} during {after}{tail(server.log, 5)}")
            return False
    return bool(servers)


def measure_flows(
    children: Children, args: argparse.Namespace, flows: list[str], servers: list[Server], bare_port: int,
    found: Findings,
) -> None:
    """The HTTP flows and passkey, each beside a bare run before and after it."""
    ceiling = 5000.0  # req/s assumed before bare has shown this machine's ceiling
    last_bare: list[float] = []  # the latest bare check, shared by the flows on either side of it
    between: list[float] = []

    def bare_check() -> list[float]:
        """One bare run between flows: this machine's speed drifts, so each flow is compared
        with bare measured just before and just after it."""
        if not bare_port:
            return []
        run = wrk(children, args, bare_port, "/", args.duration, "get")
        print(f"  bare between flows: {run.rate:.0f} req/s", flush=True)
        if run.errors:
            return []
        between.append(run.rate)
        return [run.rate]

    def beside_bare(result: FlowResult) -> None:
        nonlocal last_bare
        before = last_bare
        last_bare = bare_check()
        result.bare_beside = before + last_bare

    ports = [s.port for s in servers]
    for flow in HTTP_FLOW_SPECS:
        if flow.name not in flows or (flow.name != "bare" and not servers_alive(servers, found, "an earlier flow")):
            continue
        print(flow.name, flush=True)
        target = ([bare_port], []) if flow.name == "bare" else (ports, servers)
        result = guarded(flow.name, lambda: run_http_flow(children, args, flow, *target, ceiling))
        if flow.name == "bare" and result.runs:
            ceiling = 1.5 * max(r.rate for r in [*result.runs, *([result.warmup] if result.warmup else [])])
            last_bare = [result.runs[-1].rate]
        else:
            beside_bare(result)
        found.results.append(result)
        servers_alive(servers, found, flow.name)
    if "passkey" in flows and servers_alive(servers, found, "an earlier flow"):
        print("passkey", flush=True)
        result = guarded("passkey", lambda: run_passkey(children, args, servers, args.connections))
        beside_bare(result)
        found.results.append(result)
        servers_alive(servers, found, "passkey")
    if between:
        found.notes.append("bare between flows: " + ", ".join(f"{rate:,.0f}" for rate in between) + " req/s")


def stop_servers(children: Children, servers: list[Server], sink: subprocess.Popen[bytes], found: Findings) -> None:
    found.notes.append(
        f"serve's email queue at the end: {mail_statuses(servers[0].db)}; the sink received {sink_count(sink)}"
    )
    found.notes += servers[0].db.notes()
    for server in servers:
        alive = server.process.poll() is None
        code = children.stop(server.process)
        if alive and code != 0:
            found.notes.append(f"serve exited with {'a kill' if code is None else code} on SIGINT, not 0")
        found.notes += log_findings(server.log)


def measure_all(args: argparse.Namespace, children: Children, tmp: Path) -> tuple[list[Findings], Findings]:
    """Every setup of --engine in turn (the PostgreSQL ones on one throwaway cluster); their
    findings, and the whole run's (machine load, time)."""
    whole = Findings(args.flows, os.getloadavg(), cpu_busy())
    started_at, busy_at_start, own_at_start = time.perf_counter(), busy_seconds(), own_seconds()
    setups = SETUPS[args.engine]
    cluster = start_cluster() if any(s.engine == "postgres" for s in setups) else None
    cluster_seconds = 0.0
    try:
        founds = [measure(args, children, tmp / setup.slug, setup, cluster) for setup in setups]
    finally:
        if cluster is not None:
            cluster_seconds = cluster.cpu_seconds()
            cluster.stop()
    whole.seconds = time.perf_counter() - started_at
    # Every process of ours is stopped and waited for, so own_seconds() holds all our CPU time,
    # but for the PostgreSQL cluster's (not our child: pg_ctl starts it), counted apart.
    foreign = (busy_seconds() - busy_at_start) - (own_seconds() - own_at_start) - cluster_seconds
    whole.foreign_share = max(0.0, foreign / whole.seconds / (os.cpu_count() or 1))
    return founds, whole


def main() -> int:
    args = parse_args()
    if not SERVE.exists():
        print(f"bench: {SERVE} is missing: run scripts/setup test first", file=sys.stderr)
        return 1
    try:
        subprocess.run(["wrk", "-v"], capture_output=True, timeout=10)
    except OSError:
        print("bench: wrk is not installed (apt-get install wrk, or run scripts/bench as root)", file=sys.stderr)
        return 1
    children = Children()
    try:
        with signals_as_interrupt(), tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
            try:
                text = report(args, *measure_all(args, children, Path(tmp)))
            finally:
                children.stop_all()
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench: could not run: {exc}", file=sys.stderr)
        return 1
    print()
    print(text)
    if not args.no_results:
        write_results(text)
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
