"""The open-loop latency section of bench/run.py (issue 19): each HTTP flow at --openloop-rate
requests/s and passkey at --openloop-passkey-rate ceremonies/s, through bench/openloop.py (one
process per run, on the load core): a warm-up run, then --openloop-repeat timed runs, each on
fresh prepared bodies and an empty email queue; per endpoint, medians over the runs of p50, p99,
p99.9 and max, and of the achieved rate."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prepare
from flows import FLOW_ERRORS, HttpFlow, all_counts, failure_text, spot_check
from harness import BENCH, BenchError, Children
from serve import MAGIC_LINK_TTL, ORIGIN, Server, access_token, drain_mail, non_2xx

PASSKEY_WORKERS = 32  # enrolled users, each ceremony holds one: far more than 300/s needs at a few ms each


@dataclass
class OpenLoopResult:
    flow: str
    offered: float
    unit: str = "req/s"
    runs: list[dict[str, Any]] = field(default_factory=list)  # openloop.py's result lines, timed runs
    warmup: dict[str, Any] | None = None
    failure: str = ""

    @property
    def every_run(self) -> list[dict[str, Any]]:
        return [*self.runs, *([self.warmup] if self.warmup else [])]

    @property
    def errors(self) -> int:
        return sum(r["errors"] for r in self.every_run)

    @property
    def achieved(self) -> float:
        return statistics.median(r["achieved"] for r in self.runs) if self.runs else 0.0

    def endpoints(self) -> list[str]:
        return list(self.runs[0]["endpoints"]) if self.runs else []

    def median(self, endpoint: str, key: str) -> float:
        """The median over the timed runs of one endpoint's figure (p99_ms...)."""
        return statistics.median(r["endpoints"].get(endpoint, {}).get(key, 0.0) for r in self.runs)

    def lag(self, key: str) -> float:
        return statistics.median(r["lag"][key] for r in self.runs)

    def flags(self) -> list[str]:
        """Every flag of every run, warm-up's errors included (a run with errors is not valid)."""
        seen = [f for r in self.runs for f in r["flags"]]
        if self.warmup and self.warmup["errors"]:
            seen.append(f"warm-up: {self.warmup['errors']} errors")
        return list(dict.fromkeys(seen))


def generator(
    children: Children, command: list[str], seconds: float, server: Server | None
) -> dict[str, Any]:
    """One openloop.py run; its result, with the server's own count of non-2xx answers added."""
    before = all_counts([server]) if server else {}
    process = children.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=seconds + 120)
    finally:
        children.stop(process)
    line = next((x for x in out.decode().splitlines() if x.startswith("OPENLOOPRESULT ")), "")
    if not line:
        raise BenchError(f"openloop.py gave no result (exit {process.returncode}): {(out + err).decode()[-400:]}")
    result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    if server is not None:
        seen = non_2xx(before, all_counts([server]))
        result["statuses"].update({f"server: {k}": v for k, v in seen.items()})
        if seen and not result["errors"]:  # the generator saw the expected status; the server counted otherwise
            result["errors"] = sum(seen.values())
            result["flags"].append(f"{result['errors']} errors (server's count)")
    return result


def flow_command(args: argparse.Namespace, flow: HttpFlow, port: int, server: Server | None, seconds: float,
                 tmp: Path) -> list[str]:
    rate = args.openloop_rate
    command = [sys.executable, str(BENCH / "openloop.py"), "--port", str(port), "--rate", str(rate),
               "--seconds", str(seconds), "--method", "GET" if flow.mode == "get" else "POST",
               "--path", flow.path, "--expect", str(flow.expect)]
    if flow.name == "me" and server is not None:
        command += ["--header", f"Authorization: Bearer {access_token(server)}"]
    if flow.mode == "magic_link":
        command += ["--unique-emails", prepare.unique_tag("ol")]
    elif flow.prepare is not None and server is not None:
        bodies = tmp / "bodies.jsonl"
        bodies.write_text("\n".join(flow.prepare(server, int(rate * seconds) + 10)) + "\n")
        command += ["--bodies", str(bodies)]
    return command


def passkey_command(args: argparse.Namespace, server: Server, seconds: float, tmp: Path) -> list[str]:
    made = prepare.make_tickets(server.db, server.secret, MAGIC_LINK_TTL, PASSKEY_WORKERS, prepare.unique_tag("olpk"))
    tokens = tmp / "tokens.txt"
    tokens.write_text("\n".join(t.token for t in made) + "\n")
    return [sys.executable, str(BENCH / "openloop.py"), "--port", str(server.port), "--passkey", "--origin", ORIGIN,
            "--tokens", str(tokens), "--rate", str(args.openloop_passkey_rate), "--seconds", str(seconds)]


def run_openloop(
    children: Children, args: argparse.Namespace, flow: HttpFlow | None, port: int, server: Server | None
) -> OpenLoopResult:
    """One flow (None: passkey) against one server (or, for bare, the bare app on `port`)."""
    name = flow.name if flow else "passkey"
    assert flow is not None or server is not None, "passkey needs a server"
    result = OpenLoopResult(name, args.openloop_rate if flow else args.openloop_passkey_rate,
                            "req/s" if flow else "ceremonies/s")
    if flow is not None:
        headers = {"Authorization": f"Bearer {access_token(server)}"} if flow.name == "me" and server else {}
        result.failure = spot_check(flow, [port], server, headers)
        if result.failure:
            print(f"  open-loop {name}: NOT run: {result.failure}", flush=True)
            return result
    for index in range(args.openloop_repeat + 1):
        seconds = float(args.warmup if index == 0 else args.openloop_duration)
        if server is not None:
            drain_mail(server)  # one run's emails are not delivered during the next
        with tempfile.TemporaryDirectory(prefix="bench-openloop-") as tmp:
            if flow is not None:
                command = flow_command(args, flow, port, server, seconds, Path(tmp))
            else:
                assert server is not None
                command = passkey_command(args, server, seconds, Path(tmp))
            run = generator(children, command, seconds, server)
        print_run(name, result.unit, run, "warm-up" if index == 0 else f"run {index}/{args.openloop_repeat}")
        if index == 0:
            result.warmup = run
        else:
            result.runs.append(run)
    return result


def guarded_openloop(name: str, measure_one: Callable[[], OpenLoopResult]) -> OpenLoopResult:
    """As flows.guarded: a flow that cannot finish is reported as such, and the others still run."""
    try:
        return measure_one()
    except FLOW_ERRORS as exc:
        print(f"  open-loop {name}: failed: {type(exc).__name__}: {exc}", flush=True)
        return OpenLoopResult(name, 0.0, failure=failure_text(exc))


def print_run(name: str, unit: str, run: dict[str, Any], label: str) -> None:
    each = "; ".join(f"{endpoint} p50 {s['p50_ms']:.2f} / p99 {s['p99_ms']:.2f} / max {s['max_ms']:.1f} ms"
                     for endpoint, s in run["endpoints"].items())
    flags = f" — {', '.join(run['flags'])}" if run["flags"] else ""
    first = f" (first: {run['first_error']})" if run["first_error"] else ""
    print(f"  open-loop {name} {label}: {run['achieved']:.0f} of {run['offered']:.0f} {unit}; {each};"
          f" generator lag p99 {run['lag']['p99_ms']:.2f} ms{flags}{first}", flush=True)


def openloop_rows(results: list[OpenLoopResult]) -> list[list[str]]:
    """One row per endpoint of each flow: medians over its timed runs."""
    rows = []
    for r in results:
        if r.failure or not r.runs:
            rows.append([r.flow, "—", "—", "—", "—", "—", "—", "—", "—", "—", f"NOT run: {r.failure[:80]}"])
            continue
        for endpoint in r.endpoints():
            rows.append([
                r.flow, endpoint, f"{r.offered:,.0f} {r.unit}", f"{r.achieved:,.0f}",
                *(f"{r.median(endpoint, key):.2f}" for key in ("p50_ms", "p99_ms", "p99.9_ms")),
                f"{r.median(endpoint, 'max_ms'):.1f}", f"{r.lag('p99_ms'):.2f}", str(r.errors), "; ".join(r.flags()),
            ])
    return rows
