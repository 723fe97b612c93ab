"""The report: the tables, the notes, the machine description and bench/RESULTS.md."""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from findings import Findings
from flows import HTTP_FLOWS, FlowResult
from goals import IDLE_RSS_MB, RATIO_GOALS, goal_rows, ratio
from harness import RESULTS, ROOT
from openloop_runs import openloop_rows
from other_flows import Soak, Startup

# --- the report ---------------------------------------------------------------------------------


def busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot, from /proc/stat (idle and iowait excluded)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this process and of every child it has waited for (all of them, once
    they are stopped: serve, the baseline, the sink, wrk, the passkey client)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of all cores busy over `seconds` (nothing of ours runs yet)."""
    before = busy_seconds()
    time.sleep(seconds)
    return (busy_seconds() - before) / seconds / (os.cpu_count() or 1)


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine(found: Findings) -> list[str]:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = "?"
    try:
        kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:")))
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass

    def installed(name: str) -> str:
        return f"{name} {version(name)}" if importlib.util.find_spec(name) else f"{name}: not installed"

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; memory {memory}",
        f"- kernel: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, uvicorn {version('uvicorn')},"
        f" starlette {version('starlette')}; {installed('uvloop')}, {installed('httptools')}",
        f"- wrk: {subprocess.run(['wrk', '-v'], capture_output=True, text=True).stdout.split(' [')[0].strip()}",
        f"- load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in found.load_before)},"
        f" after {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- other work on the machine: {found.busy_before:.0%} of the cores busy just before the run; during it,"
        f" processes not started by the benchmark used {found.foreign_share:.0%} of the cores"
        + (" — the figures may be low and noisy" if max(found.busy_before, found.foreign_share) > 0.05 else ""),
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- git commit: {git('rev-parse', '--short=12', 'HEAD')}{dirty}",
    ]


def fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def flow_rows(results: list[FlowResult]) -> list[list[str]]:
    rows = []
    for r in results:
        if r.failure:
            rows.append([r.name, "—", "—", "—", "—", "—", target_text(r.name), f"NOT run: {r.failure[:80]}"])
            continue
        value = ratio(r, results)
        errors = str(r.errors) if not r.errors else f"**{r.errors}** {r.error_detail()}"
        rows.append([
            r.name, f"{r.rate:,.0f} {r.unit}", fmt(r.p50), fmt(r.p99), errors,
            "—" if value is None else f"{value:.2f}", target_text(r.name), verdict(r, value),
        ])
    return rows


def target_text(name: str) -> str:
    if name == "bare":
        return "baseline"
    if name == "email":
        return "queue/raw ≥ 0.80"
    return f"≥ {RATIO_GOALS[name]:.2f}"


def verdict(r: FlowResult, value: float | None) -> str:
    if r.errors:
        return "not valid (errors)"
    if any(run.exhausted for run in r.runs):
        return "not valid (ran out of bodies)"
    if r.name == "bare":
        return ""
    if value is None:
        return "no baseline in this run"
    return "met" if value >= RATIO_GOALS[r.name] else "NOT met"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, padded so that it reads as well in a terminal."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def memory_rows(
    idle_mb: float | None, load_mb: float | None, startups: list[Startup], soak: Soak | None
) -> list[list[str]]:
    rows = []
    if idle_mb is not None:
        met = "met" if idle_mb < IDLE_RSS_MB else "NOT met"
        rows.append(["idle RSS of serve (after start-up and one request)", f"{idle_mb:.1f} MB",
                     f"< {IDLE_RSS_MB:.0f} MB", met])
    if load_mb:
        rows.append(["RSS under load (max sampled during the flows)", f"{load_mb:.1f} MB", "", ""])
    for s in startups:
        if s.failure:
            rows.append([f"start-up to readiness, {s.label}", s.failure[:100], "", ""])
            continue
        each = ", ".join(f"{x:.2f}" for x in s.seconds)
        rows.append([f"start-up to readiness, {s.label}", f"{statistics.median(s.seconds):.2f} s (median of {each})",
                     "", ""])
        rows.append([f"idle RSS, {s.label}", f"{s.idle_rss_mb:.1f} MB", "", ""])
        if s.size_mb is not None:
            rows.append([f"size, {s.label}", f"{s.size_mb:.1f} MB", "", ""])
    if soak is not None and soak.samples:
        values = [mb for _, mb in soak.samples]
        rows.append([
            f"soak {soak.seconds:.0f} s (me + magic_link), RSS first / last / max",
            f"{values[0]:.1f} / {values[-1]:.1f} / {max(values):.1f} MB", "flat",
            f"{soak.requests:,} requests, {soak.errors} errors",
        ])
    return rows


def write_results(text: str) -> None:
    header = (
        "<!-- Generated by bench/run.py (scripts/bench) on every run: do not edit by hand. -->\n\n"
        "# Benchmark results (issue 9; PostgreSQL beside SQLite: SCALE.md)\n\n"
    )
    RESULTS.write_text(header + text + "\n")

def report(args: argparse.Namespace, founds: list[Findings], whole: Findings) -> str:
    """The command, the engines side by side, then each setup's tables and notes, and the
    machine, as Markdown."""
    parts = [f"`{' '.join(['.venv/bin/python bench/run.py', *sys.argv[1:]])}`", ""]
    if len(founds) > 1:
        parts += ["## The engines side by side", "", *engines_text(args, founds, whole), ""]
    for found in founds:
        parts += [f"## {found.label}", "", section(args, found), ""]
    parts += ["## Machine", "", *machine(whole), f"- pinning: {args.pinning}"]
    return "\n".join(parts)


def engines_text(args: argparse.Namespace, founds: list[Findings], whole: Findings) -> list[str]:
    flows = [f for f in whole.flows if f not in ("bare", "startup")]
    rows = []
    for flow in flows:
        row = [flow]
        for found in founds:
            r = next((r for r in found.results if r.name == flow), None)
            row.append(side_cell(r, found.results))
        rows.append(row)
    return [
        "Each cell: the rate, its ratio to the bare Starlette app measured beside it in the same setup (in"
        " brackets) and p99. Two servers: one wrk (or passkey client) per server at once, each with half the"
        " threads and connections, their rates summed (p99: the worse of the two). PostgreSQL runs on a"
        " throwaway cluster the bench starts on this same machine, on the load generators' core when pinned"
        f" (see Machine); fsync and full_page_writes on, synchronous_commit {args.pg_synchronous_commit}"
        " (the tests' clusters run with all three off). SQLite runs with the server's own settings: WAL,"
        " synchronous=NORMAL (no fsync at commit, only at checkpoints). email and start-up are SQLite only.",
        "",
        table(["flow", *(f.label for f in founds)], rows),
        "",
        f"Whole run, every setup: {whole.seconds:.0f} s.",
    ]


def side_cell(r: FlowResult | None, results: list[FlowResult]) -> str:
    if r is None:
        return "—"
    if r.failure:
        return "NOT run"
    value = ratio(r, results)
    text = f"{r.rate:,.0f}" + ("" if value is None else f" ({value:.2f})")
    if r.p99 is not None:
        text += f", p99 {r.p99:.0f} ms"
    if r.errors or any(run.exhausted for run in r.runs):
        text += " — not valid"
    return text


def section(args: argparse.Namespace, found: Findings) -> str:
    """One setup's tables, how they were measured, and its notes."""
    flows = found.flows
    rows = flow_rows(found.results)
    any_http = any(f in flows for f in HTTP_FLOWS)
    method = [
        (any_http, f"- HTTP flows: wrk -t{args.threads} -c{args.connections} on 127.0.0.1, a {args.warmup} s warm-up,"
         f" then {args.repeat} x {args.duration} s runs; rate, p50 and p99 are medians over the runs. Errors count"
         " every non-2xx answer and socket error, warm-up included."),
        ("passkey" in flows, f"- passkey: {args.connections} workers (bench/passkey_load.py), each with its own user,"
         " passkey and keep-alive connection; a ceremony is login/options + login/verify (usernameless); p50/p99"
         " are of the whole ceremony."),
        ("email" in flows, "- email: bench/email_delivery.py's queue (MailWorker draining SQLite) against raw"
         f" aiosmtplib, both to a local sink, {args.email_messages} messages, concurrency {args.email_concurrency}."),
        (bool(rows), "- vs bare: the flow's rate over the mean of the bare Starlette runs made just before and just"
                     " after it, as this machine's speed drifts during a run (email: queue/raw)."),
        (any_http or "passkey" in flows, f"- Throughput runs are closed-loop: with {args.connections} connections"
         f" each waiting for its answer, mean latency = {args.connections} / rate, so their p50/p99 are mostly"
         " queueing. Latency is judged open-loop (below)."),
        (bool(found.openloop), f"- Open-loop: bench/openloop.py sends {args.openloop_rate:,.0f} req/s per HTTP flow"
         f" ({args.openloop_passkey_rate:,.0f} ceremonies/s for passkey) on a fixed schedule, a {args.warmup} s"
         f" warm-up then {args.openloop_repeat} x {args.openloop_duration:g} s runs; each latency runs from the"
         " request's due time (a wait for a connection or for the generator counts); figures are medians over the"
         " runs. lag: how late the generator itself handed requests out (p99). Flagged: achieved rate under 98 % of"
         " the offered, generator p99 lag over 2 ms, errors (a run with errors is not valid)."),
        (True, f"- Stack: {found.stack}" + (f" — as the servers reported it: {'; '.join(found.stacks_seen)}"
                                             if found.stacks_seen else "") + f". This setup: {found.seconds:.0f} s."),
    ]
    parts = [line for keep, line in method if keep] + [""]
    if rows:
        parts += [table(["flow", "rate", "p50 ms", "p99 ms", "errors", "vs bare", "target", "met"], rows), ""]
    if found.openloop:
        parts += ["Open-loop latency (ms):", "",
                  table(["flow", "endpoint", "offered", "achieved", "p50", "p99", "p99.9", "max", "lag p99", "errors",
                         "flags"], openloop_rows(found.openloop)), ""]
    goals_title = "Goals (issue 19)" + (": set for the standard stack, shown here for comparison"
                                        if found.stack == "pure" else "")
    parts += [f"{goals_title}:", "", table(["goal", "measured", "verdict"], goal_rows(found, args)), ""]
    memory = memory_rows(found.idle_mb, found.load_mb, found.startups, found.soak)
    if memory:
        parts += [table(["measure", "value", "target", "met"], memory), ""]
    notes = [f"- {r.name}: {n}" for r in found.results for n in r.notes]
    notes += [
        f"- {r.name} per run: " + ", ".join(f"{run.rate:,.0f}" for run in r.runs) + f" {r.unit}"
        + ("" if r.unit == "msg/s" else "; p99 " + ", ".join(f"{run.p99_ms:.1f}" for run in r.runs) + " ms")
        for r in found.results if r.runs
    ]
    notes += [f"- {n}" for n in found.notes]
    if notes:
        parts += ["Notes:", "", *notes, ""]
    if found.soak is not None and found.soak.samples:
        samples = ", ".join(f"{t:.0f}: {mb:.1f}" for t, mb in found.soak.samples)
        parts += [f"Soak RSS samples (seconds: MB): {samples}", ""]
    return "\n".join(parts).rstrip()

