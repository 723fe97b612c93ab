"""Issue 19's goals, each judged for one setup as "met", "NOT met" or "not measured (why)".

Throughput: ratios to the bare Starlette app measured beside each flow in the same setup (email:
the queue's rate over raw aiosmtplib's). Open-loop latency (one server): each HTTP flow's p99
at 1,000 req/s, each passkey request's p99 at 300 ceremonies/s. Start-up: the one-file
executable's time to readiness and serve's idle RSS.
"""

from __future__ import annotations

import argparse
import statistics

from findings import Findings
from flows import HTTP_FLOWS, FlowResult

RATIO_GOALS = {  # the flow's rate / bare's (passkey: ceremonies/s per bare req/s; email: queue / raw)
    "magic_link": 0.25, "verify": 0.15, "code_verify": 0.15, "refresh": 0.20, "me": 0.55, "passkey": 0.07,
    "email": 0.80,
}
HTTP_P99_MS = 10.0  # each HTTP flow, at 1,000 req/s
PASSKEY_P99_MS = 15.0  # each request of the ceremony, at 300 ceremonies/s
OPENLOOP_FLOWS = ("magic_link", "verify", "code_verify", "refresh", "me")
READY_SECONDS = 0.7  # the one-file executable, spawn to the first /readiness 200
IDLE_RSS_MB = 70.0


def ratio(r: FlowResult, results: list[FlowResult]) -> float | None:
    """The flow's rate over bare's mean just before and after it (else the setup's bare run)."""
    if r.ratio_override is not None:
        return r.ratio_override
    if r.bare_beside:
        return r.rate / statistics.mean(r.bare_beside)
    bare = next((b for b in results if b.name == "bare" and b.runs), None)
    return r.rate / bare.rate if bare else None


def why_not(name: str, found: Findings, args: argparse.Namespace) -> str:
    """Why a goal has no figure in this setup."""
    if found.stack == "pure" and name not in HTTP_FLOWS:
        return "on the standard stack only"
    if name in ("email", "startup") and found.engine != "sqlite":
        return "SQLite setups only"
    return "not in --only" if name not in args.flows else "not run"


def judged(value: float, goal: float, below: bool) -> str:
    return "met" if (value < goal if below else value >= goal) else "NOT met"


def ratio_row(name: str, found: Findings, args: argparse.Namespace) -> list[str]:
    goal = f"{name} ≥ {RATIO_GOALS[name]:.2f} × " + ("raw aiosmtplib" if name == "email" else "bare")
    r = next((x for x in found.results if x.name == name), None)
    if r is None:
        return [goal, "—", f"not measured ({why_not(name, found, args)})"]
    if r.failure:
        return [goal, "—", f"not measured ({r.failure[:60]})"]
    if r.errors or any(run.exhausted for run in r.runs):
        return [goal, "—", "not measured (the runs had errors or ran out of bodies: not valid)"]
    value = ratio(r, found.results)
    if value is None:
        return [goal, "—", "not measured (no bare baseline in this setup)"]
    return [goal, f"{value:.3f}", judged(value, RATIO_GOALS[name], below=False)]


def latency_rows(name: str, found: Findings, args: argparse.Namespace) -> list[list[str]]:
    passkey = name == "passkey"
    rate = f"{args.openloop_passkey_rate:,.0f} ceremonies/s" if passkey else f"{args.openloop_rate:,.0f} req/s"
    target = PASSKEY_P99_MS if passkey else HTTP_P99_MS
    goal = f"{name} p99 < {target:.0f} ms at {rate}"
    r = next((x for x in found.openloop if x.flow == name), None)
    why = ("one-server setups only" if found.servers > 1 else "--openloop-repeat 0" if not args.openloop_repeat
           else why_not(name, found, args))
    if r is None or r.failure or not r.runs:
        return [[goal, "—", f"not measured ({r.failure[:60] if r and r.failure else why})"]]
    if r.errors:
        return [[goal, "—", "not measured (errors: not valid)"]]
    flagged = [f for f in r.flags() if "errors" not in f]
    suffix = f" (flagged: {'; '.join(flagged)})" if flagged else ""
    rows = []
    for endpoint in r.endpoints():  # passkey: options and verify, each judged alone
        p99 = r.median(endpoint, "p99_ms")
        label = goal.replace(name, f"passkey {endpoint.rsplit('/', 1)[1]}") if passkey else goal
        rows.append([label, f"{p99:.2f} ms", judged(p99, target, below=True) + suffix])
    return rows


def startup_rows(found: Findings, args: argparse.Namespace) -> list[list[str]]:
    ready_goal, rss_goal = f"executable ready < {READY_SECONDS} s", f"idle RSS < {IDLE_RSS_MB:.0f} MB"
    binary = next((s for s in found.startups if s.label.startswith("executable")), None)
    if binary is None:
        ready = [ready_goal, "—", f"not measured ({why_not('startup', found, args)})"]
    elif binary.failure:
        ready = [ready_goal, "—", f"not measured ({binary.failure[:60]})"]
    else:
        seconds = statistics.median(binary.seconds)
        ready = [ready_goal, f"{seconds:.2f} s", judged(seconds, READY_SECONDS, below=True)]
    idle = found.idle_mb if found.idle_mb is not None else (binary.idle_rss_mb if binary and binary.seconds else None)
    if idle is None:
        rss = [rss_goal, "—", "not measured (no server ran)"]
    else:
        rss = [rss_goal, f"{idle:.1f} MB", judged(idle, IDLE_RSS_MB, below=True)]
    return [ready, rss]


def goal_rows(found: Findings, args: argparse.Namespace) -> list[list[str]]:
    """Every goal of issue 19 for this setup: [goal, measured, verdict]."""
    rows = [ratio_row(name, found, args) for name in RATIO_GOALS]
    for name in (*OPENLOOP_FLOWS, "passkey"):
        rows += latency_rows(name, found, args)
    return rows + startup_rows(found, args)
