"""Issues 9 and 19's benchmark, in one command: throughput, open-loop latency, memory and start-up
of a real `passwordless serve`, each throughput against a bare Starlette app measured in the same
run, and every goal of issue 19 printed as met, NOT met or not measured (bench/goals.py).

    .venv/bin/python bench/run.py [--engine sqlite|postgres|both] [--stack standard|pure|both]
                                  [--duration 5] [--repeat 3] [--warmup 2] [--only me,bare] [--soak 300]
                                  [--openloop-duration 10] [--openloop-repeat 3] [--openloop-rate 1000]
                                  [--openloop-passkey-rate 300] [--pg-synchronous-commit on|off]

Setups, each measured alone, its own bare baseline included, one after the other: SQLite with
one server; PostgreSQL with one server, then two servers on one database (--engine both, the
default, runs all three). PostgreSQL runs on a throwaway cluster the bench starts itself
(tests/support/postgres.py's, with production durability: bench/engines.py), a fresh database
per setup, serve configured with `[database] url` and a shared jwt.secret. Two servers: one wrk
(and one passkey client) per server at once, each with half the threads and connections, their
counts summed. email (it times the SQLite queue) and start-up run with SQLite only.

Stacks (bench/stack.py starts every server and bare app and reads back, from the server's own
log, the loop and HTTP parser that ran): standard is uvicorn[standard] (uvloop + httptools);
pure makes `import uvloop` and `import httptools` fail in the server's process, so uvicorn falls
back to asyncio + h11 — the product unchanged. --stack both (the default) adds, after each
one-server setup, the same setup on the pure stack, measuring bare and the HTTP flows. The bare
baseline always runs on its setup's stack.

Pinning (bench/pinning.py): the server under test (serve or bare) on core 0, everything else
(this script, wrk, the generators, the SMTP sink, PostgreSQL) on core 1; with fewer than two
cores nothing is pinned and the report says so.

What it starts (all on 127.0.0.1, all stopped by PID on the way out, even on an error or Ctrl+C):
- an SMTP sink (bench/smtp_sink.py, its own process, as a mail server is);
- `passwordless serve`, one process per server, with a production config in a temp dir: an https
  public_url (the server itself listens on plain http), SMTP to the sink, sign-up on, and rate
  limits set far out of the way but still enabled, so the limiter's code runs;
- bench/bare_app.py: one Starlette route under uvicorn, run the same way (the baseline);
- throughput (closed loop): wrk (-t2 -c32) with bench/wrk/flow.lua for the HTTP flows,
  bench/passkey_load.py (32 workers) for passkey sign-in;
- open-loop latency (one-server setups; --openloop-repeat 0 turns it off): bench/openloop.py
  sends each HTTP flow at --openloop-rate req/s and passkey ceremonies at --openloop-passkey-rate
  on a fixed schedule, latency counted from each request's due time (no coordinated omission);
  p50 / p99 / p99.9 / max per endpoint, achieved rate, the generator's own lag; a run that fell
  short of the offered rate, whose generator fell behind, or with errors is flagged.

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

This file is the entry point and the order of the run; the parts live beside it: setups.py (the
setups, starting servers), throughput.py (wrk and passkey rates), openloop_runs.py and openloop.py
(open-loop latency), harness.py (child processes, readiness, RSS, the SMTP sink, wrk), serve.py
(serve's config, mail queue, /metrics), flows.py (the HTTP flows), other_flows.py (passkey,
email, start-up, soak), goals.py (the verdicts) and report.py (tables, machine, bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engines import DurableCluster, start_cluster
from findings import Findings
from flows import ALL_FLOWS, HTTP_FLOW_SPECS, HTTP_FLOWS
from harness import (
    RESULTS,
    ROOT,
    SERVE,
    BenchError,
    Children,
    RssSampler,
    call,
    rss_mb,
    signals_as_interrupt,
    sink_count,
    start_sink,
)
from openloop_runs import guarded_openloop, run_openloop
from other_flows import run_email, run_soak
from pinning import Pinning, pin_bench, plan
from report import busy_seconds, cpu_busy, own_seconds, report, write_results
from serve import Server, drain_mail, log_findings, mail_statuses
from setups import STACK_CHOICES, Setup, measure_startups, setups_for, start_bare, start_servers
from throughput import measure_flows, servers_alive

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
    parser.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="both",
                        help="sqlite (1 server), postgres (1 and 2 servers on a throwaway cluster) or both (default)")
    parser.add_argument("--stack", choices=STACK_CHOICES, default="both",
                        help="standard (uvloop + httptools), pure (asyncio + h11) or both (default: pure on the"
                             " one-server setups, bare and HTTP flows)")
    parser.add_argument("--openloop-duration", type=float, default=10.0, help="seconds per open-loop run (default 10)")
    parser.add_argument("--openloop-repeat", type=int, default=3,
                        help="open-loop runs per flow, after a --warmup run; medians are reported (default 3, 0: off)")
    parser.add_argument("--openloop-rate", type=float, default=1000.0, help="open-loop req/s per HTTP flow (1000)")
    parser.add_argument("--openloop-passkey-rate", type=float, default=300.0,
                        help="open-loop passkey ceremonies/s (default 300)")
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
    if args.openloop_repeat < 0 or min(args.openloop_duration, args.openloop_rate, args.openloop_passkey_rate) <= 0:
        parser.error("expected --openloop-repeat >= 0 and a positive --openloop-duration and rates")
    return args


def measure(
    args: argparse.Namespace, children: Children, tmp: Path, setup: Setup, cluster: DurableCluster | None,
    pinning: Pinning,
) -> Findings:
    flows = setup.flows(args.flows)
    found = Findings(flows, os.getloadavg(), 0.0, label=setup.label, stack=setup.stack,
                     servers=setup.servers, engine=setup.engine)
    started_at = time.perf_counter()
    sink, sink_port = start_sink(children)
    if "startup" in flows:
        measure_startups(children, args, tmp, sink_port, found, pinning)  # first, while nothing else runs

    servers: list[Server] = []
    if any(f in flows for f in (*HTTP_FLOWS[1:], "passkey")) or args.soak > 0:
        servers = start_servers(children, args, tmp, sink_port, setup, cluster, found, pinning)
        for server in servers:
            call(server.port, "GET", "/health")  # the one warm-up request
        time.sleep(0.5)
        found.idle_mb = rss_mb(servers[0].process.pid)
        for server in servers:
            print(f"serve on 127.0.0.1:{server.port} (pid {server.process.pid}, {setup.label})", flush=True)
        print(f"  idle RSS {found.idle_mb:.1f} MB", flush=True)
    bare_port = start_bare(children, tmp, setup, found, pinning) if "bare" in flows else 0
    print(f"  stacks: {'; '.join(found.stacks_seen)}", flush=True)

    with RssSampler(servers[0].process.pid if servers else os.getpid()) as sampler:
        measure_flows(children, args, flows, servers, bare_port, found)
        if args.openloop_repeat and setup.servers == 1:
            measure_openloop(children, args, flows, servers, bare_port, found)
        if servers:
            found.load_mb = sampler.max_mb
        if args.soak > 0 and setup.slug == "sqlite-1-standard" and servers_alive(servers, found, "an earlier flow"):
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


def measure_openloop(
    children: Children, args: argparse.Namespace, flows: list[str], servers: list[Server], bare_port: int,
    found: Findings,
) -> None:
    """Every HTTP flow and passkey of this setup at a fixed offered rate (one server)."""
    for flow in HTTP_FLOW_SPECS:
        if flow.name not in flows or (flow.name != "bare" and not servers_alive(servers, found, "an earlier flow")):
            continue
        print(f"open-loop {flow.name} at {args.openloop_rate:.0f} req/s", flush=True)
        port, server = (bare_port, None) if flow.name == "bare" else (servers[0].port, servers[0])
        found.openloop.append(guarded_openloop(flow.name, lambda: run_openloop(children, args, flow, port, server)))
    if "passkey" in flows and servers_alive(servers, found, "an earlier flow"):
        print(f"open-loop passkey at {args.openloop_passkey_rate:.0f} ceremonies/s", flush=True)
        found.openloop.append(guarded_openloop(
            "passkey", lambda: run_openloop(children, args, None, servers[0].port, servers[0])))


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


def measure_all(
    args: argparse.Namespace, children: Children, tmp: Path, pinning: Pinning
) -> tuple[list[Findings], Findings]:
    """Every setup of --engine in turn (the PostgreSQL ones on one throwaway cluster); their
    findings, and the whole run's (machine load, time)."""
    whole = Findings(args.flows, os.getloadavg(), cpu_busy())
    started_at, busy_at_start, own_at_start = time.perf_counter(), busy_seconds(), own_seconds()
    setups = setups_for(args.engine, args.stack)
    cluster = start_cluster() if any(s.engine == "postgres" for s in setups) else None
    cluster_seconds = 0.0
    try:
        founds = [measure(args, children, tmp / setup.slug, setup, cluster, pinning) for setup in setups]
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
    pinning = plan()
    pin_bench(pinning)  # before anything starts: every child but the servers inherits the load core
    args.pinning = pinning.describe()
    print(f"pinning: {args.pinning}", flush=True)
    children = Children()
    try:
        with signals_as_interrupt(), tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
            try:
                text = report(args, *measure_all(args, children, Path(tmp), pinning))
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
