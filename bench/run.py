"""Issue 9's benchmark, in one command: throughput, latency, memory and start-up of a real
`passwordless serve`, each throughput against a bare Starlette app measured in the same run.

    .venv/bin/python bench/run.py [--duration 5] [--repeat 3] [--warmup 2] [--only me,bare] [--soak 300]

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
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.util
import json
import os
import platform
import re
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import email_delivery  # bench/email_delivery.py, beside this file
import prepare

from passwordless.config.settings import Config

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SERVE = ROOT / ".venv" / "bin" / "passwordless"
BINARY = ROOT / "dist" / "passwordless"
FLOW_LUA = BENCH / "wrk" / "flow.lua"
RESULTS = BENCH / "RESULTS.md"

PUBLIC_URL = "https://auth.bench.test"  # production refuses http; the server still listens on http
ORIGIN = PUBLIC_URL  # webauthn.origins defaults to [public_url]
MAGIC_LINK_TTL = 15 * 60  # the config's default, used for prepared tickets too
REFRESH_TTL = 30 * 24 * 3600
# Rate limits with the default windows and counts no run comes near: the limiter's code still runs.
HUGE_RATE_PER_IP = "1000000000/1m"
HUGE_RATE_PER_EMAIL = "1000000000/15m"

READY_TIMEOUT = 60.0  # seconds a server may take to answer /readiness 200
STOP_TIMEOUT = 15.0  # seconds a process may take to stop before it is killed
DRAIN_TIMEOUT = 180.0  # seconds the email queue may take to empty between runs
P99_TARGET_MS = 25.0
IDLE_RSS_TARGET_MB = 70.0
SOAK_SAMPLE_SECONDS = 10

HTTP_FLOWS = ("bare", "magic_link", "verify", "code_verify", "refresh", "me")
ALL_FLOWS = (*HTTP_FLOWS, "passkey", "email", "startup")
# Minimum ratio to the same run's bare req/s (for passkey: ceremonies/s; for email: queue/raw).
RATIO_TARGETS = {
    "magic_link": 0.25, "verify": 0.15, "code_verify": 0.15, "refresh": 0.20, "me": 0.55,
    "passkey": 0.07, "email": 0.80,
}


class BenchError(Exception):
    """The benchmark could not run (a server did not start, a tool is missing...)."""


# --- processes: everything started here is stopped here ----------------------------------------


class Children:
    """Every process this run starts. Each gets its own session, so a Ctrl+C in the terminal
    reaches only this script, which then stops them in order, by PID: SIGINT (or closing the
    sink's stdin), then SIGKILL to the process group if it outlives STOP_TIMEOUT."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> int | None:
        """Stop one process; its exit code (None if it had to be killed)."""
        if process in self.running:
            self.running.remove(process)
        if process.stdin is not None:
            process.stdin.close()  # the sink exits when its stdin closes
        if process.poll() is None and process.stdin is None:
            process.send_signal(signal.SIGINT)  # uvicorn: stop at once (SIGTERM would drain 3 s first)
        try:
            return process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # its own group: the PyInstaller child too
            except ProcessLookupError:
                pass
            process.wait()
            return None
        finally:
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


def interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP clean up as Ctrl+C does


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- single HTTP requests (readiness, spot checks) ----------------------------------------------


def call(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        all_headers = {"content-type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        conn.request(method, path, payload, all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(process: subprocess.Popen[bytes], port: int, path: str, log: Path | None) -> float:
    """Poll until `path` answers 200; the seconds since this call. A process that exits, or
    takes longer than READY_TIMEOUT, is an error that shows the end of its log."""
    started = time.perf_counter()
    while time.perf_counter() - started < READY_TIMEOUT:
        if process.poll() is not None:
            raise BenchError(f"{process.args!r} exited with {process.returncode} before it was ready{tail(log)}")
        try:
            if call(port, "GET", path, timeout=1.0)[0] == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.005)
    raise BenchError(f"{process.args!r} was not ready after {READY_TIMEOUT:.0f} s{tail(log)}")


def tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    return "\n--- end of its log ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# --- memory -------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MB (1 MB = 2**20 bytes); 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class RssSampler:
    """Samples a process's RSS every `every` seconds on a thread while in use; keeps the max."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid, self.every = pid, every
        self.max_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.max_mb = max(self.max_mb, rss_mb(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the server and the baseline ---------------------------------------------------------------


def config_env_names() -> set[str]:
    """Environment variables the server reads as settings (they would override the file)."""
    names = {"PASSWORDLESS_CONFIG"}

    def walk(cls: type[Any]) -> None:
        for f in fields(cls):
            if "setting" in f.metadata and f.metadata["setting"].env:
                names.add(f.metadata["setting"].env)
            for key in ("section", "table_array"):
                if key in f.metadata:
                    walk(f.metadata[key])

    walk(Config)
    return names


def server_env() -> dict[str, str]:
    drop = config_env_names()
    return {k: v for k, v in os.environ.items() if k not in drop}


def write_config(folder: Path, port: int, sink_port: int, secret: str) -> Path:
    """A production configuration: everything production checks is set as it would be."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(
        f"""environment = "production"

[server]
host = "127.0.0.1"
port = {port}
public_url = "{PUBLIC_URL}"

[database]
path = "{folder / 'auth.db'}"

[jwt]
secret = "{secret}"

[auth]
allow_signup = true

[email]
transport = "smtp"
from = "Bench <auth@bench.test>"

[email.smtp]
host = "127.0.0.1"
port = {sink_port}
security = "none"

[rate_limit]
enabled = true
magic_link_per_email = "{HUGE_RATE_PER_EMAIL}"
magic_link_per_ip = "{HUGE_RATE_PER_IP}"
verify_per_ip = "{HUGE_RATE_PER_IP}"
passkey_per_ip = "{HUGE_RATE_PER_IP}"
"""
    )
    return path


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    folder: Path
    secret: str
    log: Path

    @property
    def db(self) -> Path:
        return self.folder / "auth.db"


def start_serve(children: Children, command: Path, folder: Path, sink_port: int) -> tuple[Server, float]:
    """`command serve` with a fresh production config in `folder`; the server and its time to
    readiness (spawn to the first /readiness 200)."""
    port, secret = free_port(), secrets.token_urlsafe(32)
    config = write_config(folder, port, sink_port, secret)
    log = folder / "serve.log"
    with log.open("ab") as out:
        started = time.perf_counter()
        process = children.start(
            [str(command), "serve", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=server_env()
        )
    server = Server(process, port, folder, secret, log)
    try:
        wait_ready(process, port, "/readiness", log)
    except BaseException:
        children.stop(process)
        raise
    return server, time.perf_counter() - started


def start_sink(children: Children) -> tuple[subprocess.Popen[bytes], int]:
    """bench/smtp_sink.py, as email_delivery.py starts it: it prints `port N`, answers `count`
    on stdin and exits when stdin closes."""
    sink = children.start(
        [sys.executable, str(BENCH / "smtp_sink.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert sink.stdout is not None
    line = sink.stdout.readline()  # bounded: the sink prints it at once, or exits (EOF)
    if not line.startswith(b"port "):
        raise BenchError("the SMTP sink did not start")
    return sink, int(line.split()[1])


def sink_count(sink: subprocess.Popen[bytes]) -> int:
    assert sink.stdin is not None and sink.stdout is not None
    sink.stdin.write(b"count\n")
    sink.stdin.flush()
    return int(sink.stdout.readline().split()[0])


def mail_backlog(db: Path) -> int:
    """Emails the server has yet to deliver (pending or being sent)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM email_queue WHERE status IN ('pending', 'sending')").fetchone()
    return int(row[0])


def mail_statuses(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return {s: n for s, n in conn.execute("SELECT status, count(*) FROM email_queue GROUP BY status")}


def drain_mail(server: Server) -> tuple[int, float]:
    """Wait until the server has delivered every queued email, so one run's email backlog never
    slows the next run; (emails that were waiting, seconds it took)."""
    waiting, started = mail_backlog(server.db), time.perf_counter()
    while mail_backlog(server.db) and time.perf_counter() - started < DRAIN_TIMEOUT:
        time.sleep(0.2)
    return waiting, time.perf_counter() - started


# --- wrk ----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run of a flow."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers + socket errors
    detail: dict[str, int] = field(default_factory=dict)  # what the errors were
    exhausted: bool = False  # ran out of prepared bodies: the rate is too low, the run is redone

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


WRK_LINE = re.compile(r"^WRKRESULT (.*)$", re.MULTILINE)


def wrk(
    children: Children, args: argparse.Namespace, port: int, path: str, seconds: int, mode: str,
    bodies: Path | None = None, headers: dict[str, str] | None = None,
) -> Run:
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_THREADS": str(args.threads), "BENCH_TAG": prepare.unique_tag("ml")}
    if bodies is not None:
        env["BENCH_BODIES"] = str(bodies)
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "5s",
               "-s", str(FLOW_LUA)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}{path}")
    process = children.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = process.communicate(timeout=seconds + 60)
    finally:
        children.stop(process)
    match = WRK_LINE.search(out.decode())
    if not match:
        raise BenchError(f"wrk gave no result (exit {process.returncode}): {(out + err).decode()[-500:]}")
    r = {k: int(v) for k, v in (item.split("=") for item in match.group(1).split())}
    detail = {name: r[name] for name in ("connect", "read", "write", "timeout") if r[name]}
    if r["status"]:
        detail["status>=400"] = r["status"]
    return Run(
        r["requests"], r["duration_us"] / 1e6, r["p50_us"] / 1000, r["p99_us"] / 1000,
        r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"], detail, r["exhausted"] > 0,
    )


METRIC = re.compile(r'^http_requests_total\{method="(\w+)",route="([^"]*)",status="(\d+)"\} ([0-9.e+]+)$', re.MULTILINE)


def status_counts(server: Server) -> dict[tuple[str, str, str], float]:
    """The server's own count of answers by (method, route, status), from /metrics."""
    try:
        status, body = call(server.port, "GET", "/metrics")
    except OSError:
        return {}
    if status != 200:
        return {}
    return {(m, r, s): float(n) for m, r, s, n in METRIC.findall(body.decode())}


def non_2xx(before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]) -> dict[str, int]:
    """Non-2xx answers between two /metrics scrapes, as "METHOD route status" -> count."""
    out = {}
    for key, n in after.items():
        grew = int(n - before.get(key, 0.0))
        if grew and not key[2].startswith("2"):
            out[" ".join(key)] = grew
    return out


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


def access_token(server: Server) -> str:
    """A fresh access token, by a prepared ticket spent through the real API."""
    (ticket,) = prepare.make_tickets(server.db, server.secret, MAGIC_LINK_TTL, 1, prepare.unique_tag("me"))
    status, body = call(server.port, "POST", "/auth/magic-link/verify", {"token": ticket.token})
    if status != 200:
        raise BenchError(f"signing in for /auth/me answered {status}: {body[:300]!r}")
    return str(json.loads(body)["access_token"])


def spot_check(flow: HttpFlow, port: int, server: Server | None, headers: dict[str, str]) -> str:
    """A few single requests exactly like the timed ones must answer `expect`; else why not."""
    bodies: list[str | None] = [None, None]
    if flow.prepare is not None and server is not None:
        bodies = list(flow.prepare(server, 3))
    elif flow.mode == "magic_link":
        bodies = [json.dumps({"email": f"{prepare.unique_tag('check')}@bench.test"}) for _ in range(2)]
    for body in bodies:
        method = "GET" if flow.mode == "get" else "POST"
        status, answer = call(port, method, flow.path, None if body is None else json.loads(body), headers)
        if status != flow.expect:
            return f"a single request answered {status}, not {flow.expect}: {answer[:300]!r}"
    return ""


def run_http_flow(
    children: Children, args: argparse.Namespace, flow: HttpFlow, port: int, server: Server | None,
    ceiling: float,
) -> FlowResult:
    """Warm-up, then --repeat timed runs. Prepared bodies are made just before each run, sized
    from the rate seen so far (a run that runs out is redone once with three times as many)."""
    result = FlowResult(flow.name)
    headers = {"Authorization": f"Bearer {access_token(server)}"} if flow.name == "me" and server else {}
    failure = spot_check(flow, port, server, headers)
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
                bodies = None
                if flow.prepare is not None and server is not None:
                    count = int(estimate * seconds * (1.5 if attempt == 0 else 4.5)) + 500
                    bodies = Path(tmp) / f"{flow.name}-{index}-{attempt}.jsonl"
                    bodies.write_text("\n".join(flow.prepare(server, count)) + "\n")
                before = status_counts(server) if server else {}
                run = wrk(children, args, port, flow.path, seconds, flow.mode if flow.prepare is None else "bodies",
                          bodies, headers)
                if server is not None:
                    seen = non_2xx(before, status_counts(server))
                    run.detail.update(seen)
                    # wrk counts only statuses >= 400 as errors; the server's own count catches the rest.
                    run.errors += sum(n for key, n in seen.items() if int(key.rsplit(" ", 1)[1]) < 400)
                if bodies is not None:
                    bodies.unlink()
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


def run_passkey(children: Children, args: argparse.Namespace, server: Server, workers: int) -> FlowResult:
    result = FlowResult("passkey", unit="ceremonies/s")
    client_cpu: list[float] = []
    requests: list[dict[str, Any]] = []
    drain_mail(server)
    with tempfile.TemporaryDirectory(prefix="bench-passkey-") as tmp:
        made = prepare.make_tickets(server.db, server.secret, MAGIC_LINK_TTL, workers, prepare.unique_tag("pk"))
        tokens = Path(tmp) / "tokens.txt"
        tokens.write_text("\n".join(t.token for t in made) + "\n")
        command = [
            sys.executable, str(BENCH / "passkey_load.py"), "--port", str(server.port), "--origin", ORIGIN,
            "--tokens", str(tokens), "--workers", str(workers), "--warmup", str(args.warmup),
            "--duration", str(args.duration), "--repeat", str(args.repeat),
        ]
        before = status_counts(server)
        errors = Path(tmp) / "stderr.txt"
        with errors.open("wb") as stderr:  # a file, not a pipe: a pipe left unread could fill and block it
            process = children.start(command, stdout=subprocess.PIPE, stderr=stderr)
        # Read its result lines as they come; a watchdog kills it should it ever hang.
        watchdog = threading.Timer(args.warmup + args.duration * args.repeat + 120, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith(b"PASSKEYRESULT "):
                    add_passkey_run(result, json.loads(line.split(b" ", 1)[1]), args.repeat, client_cpu, requests)
            err = errors.read_bytes()
        finally:
            watchdog.cancel()
            children.stop(process)
        detail = non_2xx(before, status_counts(server))
    if not result.runs:
        result.failure = f"passkey_load.py gave no result (exit {process.returncode}): {err.decode()[-500:]}"
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


def measure_startup(children: Children, command: Path, label: str, folder: Path, sink_port: int, times: int) -> Startup:
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
    bare = next((r for r in results if r.name == "bare" and r.runs), None)
    rows = []
    for r in results:
        if r.failure:
            rows.append([r.name, "—", "—", "—", "—", "—", target_text(r.name), f"NOT run: {r.failure[:80]}"])
            continue
        ratio = r.ratio_override if r.ratio_override is not None else (r.rate / bare.rate if bare else None)
        if r.bare_beside:
            ratio = r.rate / statistics.mean(r.bare_beside)
        errors = str(r.errors) if not r.errors else f"**{r.errors}** {r.error_detail()}"
        rows.append([
            r.name, f"{r.rate:,.0f} {r.unit}", fmt(r.p50), fmt(r.p99), errors,
            "—" if ratio is None else f"{ratio:.2f}", target_text(r.name), verdict(r, ratio),
        ])
    return rows


def target_text(name: str) -> str:
    if name == "bare":
        return "baseline"
    if name == "email":
        return "queue/raw ≥ 0.80"
    return f"≥ {RATIO_TARGETS[name]:.2f}, p99 < {P99_TARGET_MS:.0f} ms"


def verdict(r: FlowResult, ratio: float | None) -> str:
    if r.errors:
        return "not valid (errors)"
    if any(run.exhausted for run in r.runs):
        return "not valid (ran out of bodies)"
    if r.name == "bare":
        return ""
    missed = []
    if ratio is None:
        return "no baseline in this run"
    if ratio < RATIO_TARGETS[r.name]:
        missed.append("ratio")
    if r.p99 is not None and r.p99 >= P99_TARGET_MS:
        missed.append("p99")
    return "met" if not missed else f"NOT met ({', '.join(missed)})"


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
        met = "met" if idle_mb < IDLE_RSS_TARGET_MB else "NOT met"
        rows.append(["idle RSS of serve (after start-up and one request)", f"{idle_mb:.1f} MB",
                     f"< {IDLE_RSS_TARGET_MB:.0f} MB", met])
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
        "# Benchmark results (issue 9)\n\n"
    )
    RESULTS.write_text(header + text + "\n")


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


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    previous = {s: signal.signal(s, interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@dataclass
class Findings:
    """Everything one run measured, for the report."""

    flows: list[str]
    load_before: tuple[float, float, float]
    busy_before: float
    foreign_share: float = 0.0  # of all cores, used during the run by processes the run did not start
    results: list[FlowResult] = field(default_factory=list)
    startups: list[Startup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    idle_mb: float | None = None
    load_mb: float | None = None
    soak: Soak | None = None
    seconds: float = 0.0


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


def guarded(name: str, measure: Callable[[], FlowResult]) -> FlowResult:
    """One flow; a flow that cannot finish is reported as such, and the others still run."""
    try:
        return measure()
    except (OSError, BenchError, subprocess.TimeoutExpired, http.client.HTTPException) as exc:
        print(f"  {name}: failed: {type(exc).__name__}: {exc}", flush=True)
        return FlowResult(name, failure=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


HTTP_FLOW_SPECS = [
    HttpFlow("bare", "/", "get", 200),
    HttpFlow("magic_link", "/auth/magic-link", "magic_link", 202),
    HttpFlow("verify", "/auth/magic-link/verify", "bodies", 200, ticket_bodies("verify")),
    HttpFlow("code_verify", "/auth/code/verify", "bodies", 200, ticket_bodies("code")),
    HttpFlow("refresh", "/auth/refresh", "bodies", 200, refresh_bodies),
    HttpFlow("me", "/auth/me", "get", 200),
]


def measure(args: argparse.Namespace, children: Children, tmp: Path) -> Findings:
    flows: list[str] = args.flows
    found = Findings(flows, os.getloadavg(), cpu_busy())
    started_at, busy_at_start, own_at_start = time.perf_counter(), busy_seconds(), own_seconds()
    sink, sink_port = start_sink(children)
    if "startup" in flows:
        measure_startups(children, args, tmp, sink_port, found)  # first, while nothing else runs

    server: Server | None = None
    if any(f in flows for f in (*HTTP_FLOWS[1:], "passkey")) or args.soak > 0:
        server, _ = start_serve(children, SERVE, tmp / "serve", sink_port)
        call(server.port, "GET", "/health")  # the one warm-up request
        time.sleep(0.5)
        found.idle_mb = rss_mb(server.process.pid)
        print(f"serve on 127.0.0.1:{server.port} (pid {server.process.pid}), idle RSS {found.idle_mb:.1f} MB",
              flush=True)
    bare_port = 0
    if "bare" in flows:
        bare_port = free_port()
        bare = children.start([sys.executable, str(BENCH / "bare_app.py"), "--port", str(bare_port)])
        wait_ready(bare, bare_port, "/", None)

    def serve_alive(after: str) -> bool:
        """Whether serve still runs; if it died, say so once, with the end of its log."""
        if server is None or server.process.poll() is None:
            return server is not None
        if not any(n.startswith("serve exited") for n in found.notes):
            found.notes.append(f"serve exited with {server.process.returncode} during {after}{tail(server.log, 5)}")
        return False

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

    with RssSampler(server.process.pid if server else os.getpid()) as sampler:
        for flow in HTTP_FLOW_SPECS:
            if flow.name not in flows or (flow.name != "bare" and not serve_alive("an earlier flow")):
                continue
            print(flow.name, flush=True)
            port, target = (bare_port, None) if flow.name == "bare" else (server.port if server else 0, server)
            result = guarded(flow.name, lambda: run_http_flow(children, args, flow, port, target, ceiling))
            if flow.name == "bare" and result.runs:
                ceiling = 1.5 * max(r.rate for r in [*result.runs, *([result.warmup] if result.warmup else [])])
                last_bare = [result.runs[-1].rate]
            else:
                beside_bare(result)
            found.results.append(result)
            serve_alive(flow.name)
        if "passkey" in flows and server is not None and serve_alive("an earlier flow"):
            print("passkey", flush=True)
            result = guarded("passkey", lambda: run_passkey(children, args, server, args.connections))
            beside_bare(result)
            found.results.append(result)
            serve_alive("passkey")
        if between:
            found.notes.append("bare between flows: " + ", ".join(f"{rate:,.0f}" for rate in between) + " req/s")
        if server is not None:
            found.load_mb = sampler.max_mb
        if args.soak > 0 and server is not None and serve_alive("an earlier flow"):
            print(f"soak for {args.soak} s", flush=True)
            found.soak = run_soak(children, args, server)
            serve_alive("the soak")

    if "email" in flows:
        print("email: queue vs raw aiosmtplib", flush=True)
        if server is not None and server.process.poll() is None:
            drain_mail(server)  # serve's own worker stays idle while the email paths are timed
        found.results.append(run_email(args))

    if server is not None:
        found.notes.append(
            f"serve's email queue at the end: {mail_statuses(server.db)}; the sink received {sink_count(sink)}"
        )
        # The WAL file keeps the largest size it reached: checkpoints that fall behind show here.
        wal = Path(f"{server.db}-wal")
        found.notes.append(
            f"serve's WAL file at the end: {wal.stat().st_size / 1e6:.1f} MB"
            f" (database {server.db.stat().st_size / 1e6:.1f} MB)" if wal.exists() else "serve's WAL file: none"
        )
        alive = server.process.poll() is None
        code = children.stop(server.process)
        if alive and code != 0:
            found.notes.append(f"serve exited with {'a kill' if code is None else code} on SIGINT, not 0")
        found.notes += log_findings(server.log)
    children.stop_all()
    found.seconds = time.perf_counter() - started_at
    # Every process of ours is stopped and waited for, so own_seconds() holds all our CPU time.
    foreign = (busy_seconds() - busy_at_start) - (own_seconds() - own_at_start)
    found.foreign_share = max(0.0, foreign / found.seconds / (os.cpu_count() or 1))
    return found


def report(args: argparse.Namespace, found: Findings) -> str:
    """The tables, how they were measured, notes and the machine, as Markdown."""
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
        (any_http or "passkey" in flows, f"- With {args.connections} connections each waiting for its answer, mean"
         f" latency = {args.connections} / rate: a p99 under {P99_TARGET_MS:.0f} ms needs well over"
         f" {args.connections / P99_TARGET_MS * 1000:,.0f} req/s."),
        (True, f"- Whole run: {found.seconds:.0f} s."),
    ]
    parts = [f"`{' '.join(['.venv/bin/python bench/run.py', *sys.argv[1:]])}`", ""]
    parts += [line for keep, line in method if keep] + [""]
    if rows:
        parts += [table(["flow", "rate", "p50 ms", "p99 ms", "errors", "vs bare", "target", "met"], rows), ""]
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
    parts += ["Machine:", "", *machine(found)]
    return "\n".join(parts)


def log_findings(log: Path) -> list[str]:
    """Warnings and errors the server logged (a benchmark that made it log errors is suspect)."""
    if not log.exists():
        return []
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) >= 3 and parts[1] in ("WARNING", "ERROR", "CRITICAL"):
            key = f"{parts[1]} {parts[2]} {parts[3].split()[0] if len(parts) > 3 else ''}".strip()
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, line[:300])
        elif line.startswith("Traceback"):
            counts["Traceback"] = counts.get("Traceback", 0) + 1
    return [f"server log: {n} x `{first.get(k, k)}`" for k, n in counts.items()]


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
                text = report(args, measure(args, children, Path(tmp)))
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
