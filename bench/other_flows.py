"""The flows that are not one wrk run: passkey ceremonies (bench/passkey_load.py), email queue
vs raw aiosmtplib (bench/email_delivery.py), start-up to readiness, and the soak."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import email_delivery  # bench/email_delivery.py, beside this file
import prepare
from flows import FlowResult
from harness import BENCH, BenchError, Children, Run, call, children_of, rss_mb, wrk
from serve import MAGIC_LINK_TTL, ORIGIN, Server, access_token, drain_mail, non_2xx, start_serve, status_counts

SOAK_SAMPLE_SECONDS = 10

def add_passkey_run(
    result: FlowResult, r: dict[str, Any], repeat: int, client_cpu: list[float], requests: list[dict[str, Any]]
) -> None:
    run = Run(r["ceremonies"], r["seconds"], r["p50_ms"], r["p99_ms"], r["errors"],
              {**r["statuses"], **({"socket": r["socket_errors"]} if r["socket_errors"] else {})})
    label = "warm-up" if r["warmup"] else f"run {len(result.runs) + 1}/{repeat}"
    errors = f", {run.errors} errors {run.detail} (first: {r['first_error']})" if run.errors else ""
    print(f"  passkey {label}: {run.rate:.0f} ceremonies/s, p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms"
          f"{errors}", flush=True)
    if r["warmup"]:
        result.warmup = run
    else:
        result.runs.append(run)
        client_cpu.append(r["client_cpu"])
        requests.append(r["requests"])


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The same run of several passkey_load.py processes (one per server, at once), as one: counts
    add up over the longest duration; p50 is the mean of theirs weighted by ceremonies, p99 the worst."""
    if len(parts) == 1:
        return parts[0]
    n = sum(p["ceremonies"] for p in parts) or 1

    def weighted(get: Any) -> float:
        return float(sum(get(p) * p["ceremonies"] for p in parts) / n)

    statuses: dict[str, int] = {}
    for p in parts:
        for k, v in p["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "warmup": parts[0]["warmup"], "ceremonies": sum(p["ceremonies"] for p in parts),
        "seconds": max(p["seconds"] for p in parts), "p50_ms": weighted(lambda p: p["p50_ms"]),
        "p99_ms": max(p["p99_ms"] for p in parts), "errors": sum(p["errors"] for p in parts),
        "statuses": statuses, "socket_errors": sum(p["socket_errors"] for p in parts),
        "first_error": next((p["first_error"] for p in parts if p["first_error"]), ""),
        "client_cpu": sum(p["client_cpu"] for p in parts),
        "requests": {name: {"p50_ms": weighted(lambda p: p["requests"][name]["p50_ms"]),
                            "p99_ms": max(p["requests"][name]["p99_ms"] for p in parts)}
                     for name in ("options", "verify")},
    }


def passkey_outputs(
    children: Children, args: argparse.Namespace, servers: list[Server], workers: int, tmp: Path
) -> tuple[list[list[dict[str, Any]]], list[int | None], str]:
    """One passkey_load.py per server, at once, each with its share of the workers; each one's
    result lines, exit codes and the end of their stderr."""
    share = max(1, workers // len(servers))
    processes, logs = [], []
    for i, server in enumerate(servers):
        made = prepare.make_tickets(server.db, server.secret, MAGIC_LINK_TTL, share, prepare.unique_tag("pk"))
        tokens = tmp / f"tokens-{i}.txt"
        tokens.write_text("\n".join(t.token for t in made) + "\n")
        command = [
            sys.executable, str(BENCH / "passkey_load.py"), "--port", str(server.port), "--origin", ORIGIN,
            "--tokens", str(tokens), "--workers", str(share), "--warmup", str(args.warmup),
            "--duration", str(args.duration), "--repeat", str(args.repeat),
        ]
        logs.append(tmp / f"stderr-{i}.txt")
        with logs[-1].open("wb") as stderr:  # a file, not a pipe: a pipe left unread could fill and block it
            processes.append(children.start(command, stdout=subprocess.PIPE, stderr=stderr))
    # Read their result lines (a few short ones each); a watchdog kills them should they ever hang.
    watchdogs = [threading.Timer(args.warmup + args.duration * args.repeat + 120, p.kill) for p in processes]
    outputs: list[list[dict[str, Any]]] = []
    try:
        for watchdog in watchdogs:
            watchdog.start()
        for process in processes:
            assert process.stdout is not None
            outputs.append([json.loads(line.split(b" ", 1)[1]) for line in process.stdout
                            if line.startswith(b"PASSKEYRESULT ")])
    finally:
        for watchdog in watchdogs:
            watchdog.cancel()
        codes = [children.stop(p) for p in processes]
    return outputs, codes, " | ".join(log.read_bytes().decode(errors="replace")[-500:] for log in logs)


def run_passkey(children: Children, args: argparse.Namespace, servers: list[Server], workers: int) -> FlowResult:
    result = FlowResult("passkey", unit="ceremonies/s")
    client_cpu: list[float] = []
    requests: list[dict[str, Any]] = []
    for server in servers:
        drain_mail(server)
    before = [status_counts(s) for s in servers]
    with tempfile.TemporaryDirectory(prefix="bench-passkey-") as tmp:
        outputs, codes, err = passkey_outputs(children, args, servers, workers, Path(tmp))
    for parts in zip(*outputs):
        add_passkey_run(result, merged(list(parts)), args.repeat, client_cpu, requests)
    detail: dict[str, int] = {}
    for server, counts in zip(servers, before):
        for k, v in non_2xx(counts, status_counts(server)).items():
            detail[k] = detail.get(k, 0) + v
    if not result.runs or len({len(o) for o in outputs}) > 1:
        result.failure = f"passkey_load.py gave no result (or not from every server) (exit {codes}): {err}"
        result.runs = []
        print(f"  passkey: NOT run: {result.failure}", flush=True)
        return result
    if detail and result.runs:
        result.runs[-1].detail.update({f"server: {k}": v for k, v in detail.items()})
    result.notes.append(f"the load client itself used {statistics.median(client_cpu):.0%} of one core (median)")
    each = "; ".join(
        f"{name} p50 {statistics.median(r[name]['p50_ms'] for r in requests):.1f} ms,"
        f" p99 {statistics.median(r[name]['p99_ms'] for r in requests):.1f} ms"
        for name in ("options", "verify")
    )
    result.notes.append(f"each request of the ceremony alone (medians over the runs): {each}")
    return result


def run_email(args: argparse.Namespace) -> FlowResult:
    """bench/email_delivery.py's raw and queue paths, alternating, --repeat times."""
    result = FlowResult("email", unit="msg/s")
    n, c = args.email_messages, args.email_concurrency
    deadline = 30.0 + n / 20
    ratios, raws = [], []
    for rep in range(args.repeat):
        emails = email_delivery.queued_emails(n)
        try:
            raw, _ = asyncio.run(email_delivery.raw_rate(emails, c, build_in_loop=False, deadline=deadline))
            queued, _ = asyncio.run(email_delivery.queue_rate(emails, c, deadline))
        except asyncio.TimeoutError:
            result.failure = f"a run took longer than its {deadline:.0f} s deadline"
            return result
        raws.append(raw)
        ratios.append(queued / raw)
        result.runs.append(Run(n, n / queued, 0.0, 0.0, 0))
        print(f"  email run {rep + 1}/{args.repeat}: raw {raw:.0f} msg/s, queue {queued:.0f} msg/s,"
              f" queue/raw {queued / raw:.2f}", flush=True)
    result.ratio_override = statistics.median(ratios)
    result.notes.append(
        f"{n} messages, concurrency {c}; raw aiosmtplib {statistics.median(raws):.0f} msg/s (median);"
        f" queue/raw per run: {', '.join(f'{r:.2f}' for r in ratios)}"
    )
    return result


# --- start-up -----------------------------------------------------------------------------------


@dataclass
class Startup:
    label: str
    seconds: list[float] = field(default_factory=list)
    idle_rss_mb: float = 0.0
    failure: str = ""
    size_mb: float | None = None  # of the executable


def measure_startup(
    children: Children, command: list[str], label: str, folder: Path, sink_port: int, times: int
) -> Startup:
    """Spawn to first /readiness 200, `times` times, on a database migrated beforehand (as at
    any restart but the first)."""
    out = Startup(label)
    try:
        server, _ = start_serve(children, command, folder, sink_port)  # migrates; not timed
        children.stop(server.process)
        for _ in range(times):
            server, seconds = start_serve(children, command, folder, sink_port)
            out.seconds.append(seconds)
            call(server.port, "GET", "/health")
            time.sleep(0.5)
            pids = [server.process.pid, *children_of(server.process.pid)]
            out.idle_rss_mb = max(rss_mb(p) for p in pids)  # a one-file executable runs in a child
            children.stop(server.process)
    except BenchError as exc:
        out.failure = str(exc).splitlines()[0]
    return out


# --- soak ---------------------------------------------------------------------------------------


@dataclass
class Soak:
    seconds: int
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, RSS MB)
    requests: int = 0
    errors: int = 0


def run_soak(children: Children, args: argparse.Namespace, server: Server) -> Soak:
    """--soak seconds of /auth/me and /auth/magic-link in alternating 10 s stretches, RSS sampled
    after each (about every 10 s)."""
    soak = Soak(args.soak)
    headers = {"Authorization": f"Bearer {access_token(server)}"}
    started = time.perf_counter()
    soak.samples.append((0.0, rss_mb(server.process.pid)))
    turn = 0
    while (elapsed := time.perf_counter() - started) < args.soak:
        stretch = int(min(SOAK_SAMPLE_SECONDS, args.soak - elapsed))
        if stretch < 1:
            break
        if turn % 2 == 0:
            run = wrk(children, args, server.port, "/auth/me", stretch, "get", None, headers)
        else:
            run = wrk(children, args, server.port, "/auth/magic-link", stretch, "magic_link")
        turn += 1
        soak.requests += run.requests
        soak.errors += run.errors
        soak.samples.append((time.perf_counter() - started, rss_mb(server.process.pid)))
        print(f"  soak {soak.samples[-1][0]:.0f} s: RSS {soak.samples[-1][1]:.1f} MB", flush=True)
        if turn % 60 == 0:
            headers = {"Authorization": f"Bearer {access_token(server)}"}  # access tokens live 15 minutes
    drain_mail(server)
    return soak


