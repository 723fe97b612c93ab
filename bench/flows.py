"""The HTTP flows: each one's prepared request bodies, a spot check, then wrk warm-up and timed
runs against serve (or the bare baseline)."""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import prepare
from harness import BenchError, Children, Run, call, wrk_split
from serve import MAGIC_LINK_TTL, REFRESH_TTL, Server, access_token, drain_mail, non_2xx, status_counts

HTTP_FLOWS = ("bare", "magic_link", "verify", "code_verify", "refresh", "me")
ALL_FLOWS = (*HTTP_FLOWS, "passkey", "email", "startup")

# --- the flows ----------------------------------------------------------------------------------


@dataclass
class FlowResult:
    name: str
    runs: list[Run] = field(default_factory=list)  # the timed ones
    warmup: Run | None = None
    unit: str = "req/s"
    failure: str = ""  # why there is no figure
    notes: list[str] = field(default_factory=list)
    ratio_override: float | None = None  # email: queue/raw instead of flow/bare
    bare_beside: list[float] = field(default_factory=list)  # bare req/s just before and just after this flow

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.runs) if self.runs else 0.0

    @property
    def p50(self) -> float | None:
        return statistics.median(r.p50_ms for r in self.runs) if self.runs and self.unit != "msg/s" else None

    @property
    def p99(self) -> float | None:
        return statistics.median(r.p99_ms for r in self.runs) if self.runs and self.unit != "msg/s" else None

    @property
    def errors(self) -> int:
        return sum(r.errors for r in [*self.runs, *([self.warmup] if self.warmup else [])])

    def error_detail(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for r in [*self.runs, *([self.warmup] if self.warmup else [])]:
            for k, v in r.detail.items():
                total[k] = total.get(k, 0) + v
        return total


Prepare = Callable[[Server, int], list[str]]  # (server, how many) -> request bodies, one JSON each


def ticket_bodies(kind: str) -> Prepare:
    def make(server: Server, n: int) -> list[str]:
        made = prepare.make_tickets(server.db, server.secret, MAGIC_LINK_TTL, n, prepare.unique_tag(kind))
        if kind == "verify":
            return [json.dumps({"token": t.token}) for t in made]
        return [json.dumps({"email": t.email, "code": t.code}) for t in made]

    return make


def refresh_bodies(server: Server, n: int) -> list[str]:
    made = prepare.make_refresh_tokens(server.db, REFRESH_TTL, n, prepare.unique_tag("refresh"))
    return [json.dumps({"refresh_token": t}) for t in made]


@dataclass(frozen=True)
class HttpFlow:
    name: str
    path: str
    mode: str  # flow.lua's BENCH_MODE
    expect: int  # the status every request must get
    prepare: Prepare | None = None


def spot_check(flow: HttpFlow, ports: list[int], server: Server | None, headers: dict[str, str]) -> str:
    """A few single requests exactly like the timed ones, spread over the servers, must answer
    `expect`; else why not."""
    bodies: list[str | None] = [None, None]
    if flow.prepare is not None and server is not None:
        bodies = list(flow.prepare(server, 3))
    elif flow.mode == "magic_link":
        bodies = [json.dumps({"email": f"{prepare.unique_tag('check')}@bench.test"}) for _ in range(2)]
    for i, body in enumerate(bodies):
        method = "GET" if flow.mode == "get" else "POST"
        port = ports[i % len(ports)]
        status, answer = call(port, method, flow.path, None if body is None else json.loads(body), headers)
        if status != flow.expect:
            return f"a single request to :{port} answered {status}, not {flow.expect}: {answer[:300]!r}"
    return ""


def all_counts(servers: list[Server]) -> dict[tuple[str, str, str], float]:
    """status_counts summed over the servers."""
    total: dict[tuple[str, str, str], float] = {}
    for server in servers:
        for key, n in status_counts(server).items():
            total[key] = total.get(key, 0.0) + n
    return total


def write_bodies(lines: list[str], folder: Path, stem: str, parts: int) -> list[Path | None]:
    """The bodies dealt out into one file per server (one wrk each)."""
    files: list[Path | None] = []
    for i in range(parts):
        path = folder / f"{stem}-{i}.jsonl"
        path.write_text("\n".join(lines[i::parts]) + "\n")
        files.append(path)
    return files


def run_http_flow(
    children: Children, args: argparse.Namespace, flow: HttpFlow, ports: list[int], servers: list[Server],
    ceiling: float,
) -> FlowResult:
    """Warm-up, then --repeat timed runs, with one wrk per port at once (servers: those behind
    the ports, none for bare). Prepared bodies are made just before each run, sized from the rate
    seen so far (a run that runs out is redone once with three times as many)."""
    result = FlowResult(flow.name)
    server = servers[0] if servers else None  # they share one database: prepare through the first
    headers = {"Authorization": f"Bearer {access_token(server)}"} if flow.name == "me" and server else {}
    failure = spot_check(flow, ports, server, headers)
    if failure:
        result.failure = failure
        print(f"  {flow.name}: NOT run: {failure}", flush=True)
        return result
    drains: list[tuple[int, float]] = []  # (emails a run left queued, seconds to deliver them)
    with tempfile.TemporaryDirectory(prefix="bench-bodies-") as tmp:
        estimate = ceiling  # req/s: generous until the warm-up has shown the real rate
        for index in range(args.repeat + 1):
            seconds = args.warmup if index == 0 else args.duration
            for attempt in range(2):
                if server is not None:
                    waiting, took = drain_mail(server)
                    if waiting and flow.name == "magic_link" and index > 0:
                        drains.append((waiting, took))
                bodies: list[Path | None] = [None] * len(ports)
                if flow.prepare is not None and server is not None:
                    count = int(estimate * seconds * (1.5 if attempt == 0 else 4.5)) + 500
                    bodies = write_bodies(flow.prepare(server, count), Path(tmp), f"{flow.name}-{index}-{attempt}",
                                          len(ports))
                before = all_counts(servers)
                run = wrk_split(children, args, ports, flow.path, seconds,
                                flow.mode if flow.prepare is None else "bodies", bodies, headers)
                if servers:
                    seen = non_2xx(before, all_counts(servers))
                    run.detail.update(seen)
                    # wrk counts only statuses >= 400 as errors; the server's own count catches the rest.
                    run.errors += sum(n for key, n in seen.items() if int(key.rsplit(" ", 1)[1]) < 400)
                for body_file in bodies:
                    if body_file is not None:
                        body_file.unlink()
                if not run.exhausted:
                    break
                print(f"  {flow.name}: ran out of prepared bodies at {run.rate:.0f} req/s; again with more", flush=True)
            estimate = max(estimate if index else 0.0, run.rate)
            if run.exhausted:
                result.notes.append("ran out of prepared bodies: the figure is too low")
            label = "warm-up" if index == 0 else f"run {index}/{args.repeat}"
            errors = f", {run.errors} errors {run.detail}" if run.errors else ""
            print(f"  {flow.name} {label}: {run.rate:.0f} req/s, p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms"
                  f"{errors}", flush=True)
            if index == 0:
                result.warmup = run
            else:
                result.runs.append(run)
    if server is not None and flow.name == "magic_link":
        waiting, took = drain_mail(server)
        if waiting:
            drains.append((waiting, took))
    if drains:
        result.notes.append(
            "emails still queued when each run ended (then delivered before the next): "
            + ", ".join(f"{n} in {t:.1f} s" for n, t in drains)
            + f"; the server's worker sends about {sum(n for n, _ in drains) / sum(t for _, t in drains):.0f} msg/s"
            " when no request comes in"
        )
    return result


# What stops one flow (a server gone, a tool missing, a timeout) without stopping the others.
FLOW_ERRORS = (OSError, BenchError, subprocess.TimeoutExpired, http.client.HTTPException)


def failure_text(exc: BaseException) -> str:
    """The exception's type and its first line, as a result's `failure`."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def guarded(name: str, measure: Callable[[], FlowResult]) -> FlowResult:
    """One flow; a flow that cannot finish is reported as such, and the others still run."""
    try:
        return measure()
    except FLOW_ERRORS as exc:
        print(f"  {name}: failed: {type(exc).__name__}: {exc}", flush=True)
        return FlowResult(name, failure=failure_text(exc))


HTTP_FLOW_SPECS = [
    HttpFlow("bare", "/", "get", 200),
    HttpFlow("magic_link", "/auth/magic-link", "magic_link", 202),
    HttpFlow("verify", "/auth/magic-link/verify", "bodies", 200, ticket_bodies("verify")),
    HttpFlow("code_verify", "/auth/code/verify", "bodies", 200, ticket_bodies("code")),
    HttpFlow("refresh", "/auth/refresh", "bodies", 200, refresh_bodies),
    HttpFlow("me", "/auth/me", "get", 200),
]

