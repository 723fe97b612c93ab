"""The benchmark's processes and tools: every child started through `Children` and stopped by
PID, readiness polling, single HTTP calls, RSS sampling, the SMTP sink and wrk."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import prepare

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# The command under test: the repository's .venv, else the console script beside this Python
# (a git worktree without a .venv of its own; serve.server_env puts this tree's code first).
SERVE = ROOT / ".venv" / "bin" / "passwordless"
if not SERVE.exists():
    SERVE = Path(sys.executable).parent / "passwordless"
BINARY = ROOT / "dist" / "passwordless"
FLOW_LUA = BENCH / "wrk" / "flow.lua"
RESULTS = BENCH / "RESULTS.md"

READY_TIMEOUT = 60.0  # seconds a server may take to answer /readiness 200
STOP_TIMEOUT = 15.0  # seconds a process may take to stop before it is killed
DRAIN_TIMEOUT = 180.0  # seconds the email queue may take to empty between runs

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



def start_sink(children: Children) -> tuple[subprocess.Popen[bytes], int]:
    """bench/smtp_sink.py, as email_delivery.py starts it: it prints `port N`, answers `count`
    on stdin and exits when stdin closes. It shares core 1 with the load generators at a lower
    priority (nice 10): receiving 1,000 emails a second took enough of the core to make the open-loop
    generator send late, and a mail server is another machine's work, not the generator's."""
    sink = children.start(
        ["nice", "-n", "10", sys.executable, str(BENCH / "smtp_sink.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
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
    return wrk_split(children, args, [port], path, seconds, mode, [bodies], headers)


def wrk_split(
    children: Children, args: argparse.Namespace, ports: list[int], path: str, seconds: int, mode: str,
    bodies: list[Path | None], headers: dict[str, str] | None = None,
) -> Run:
    """One wrk per port, all at once, each with its share of --threads and --connections (wrk
    connects to one address: this is the load generator's round-robin over several servers), and
    each with its own file of bodies; their runs summed into one."""
    n = len(ports)
    threads, connections = max(1, args.threads // n), max(1, args.connections // n)
    processes = []
    for port, body_file in zip(ports, bodies):
        env = {**os.environ, "BENCH_MODE": mode, "BENCH_THREADS": str(threads), "BENCH_TAG": prepare.unique_tag("ml")}
        if body_file is not None:
            env["BENCH_BODIES"] = str(body_file)
        command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(FLOW_LUA)]
        for name, value in (headers or {}).items():
            command += ["-H", f"{name}: {value}"]
        command.append(f"http://127.0.0.1:{port}{path}")
        processes.append(children.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
    runs = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=seconds + 60)
        finally:
            children.stop(process)
        runs.append(wrk_result(process, out, err))
    return runs[0] if n == 1 else summed(runs)


def wrk_result(process: subprocess.Popen[bytes], out: bytes, err: bytes) -> Run:
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


def summed(runs: list[Run]) -> Run:
    """Runs made at the same time against different servers, as one: requests and errors add up
    over the longest duration; p50 is the mean of theirs weighted by requests, p99 the worst."""
    requests = sum(r.requests for r in runs)
    detail: dict[str, int] = {}
    for r in runs:
        for k, v in r.detail.items():
            detail[k] = detail.get(k, 0) + v
    p50 = sum(r.p50_ms * r.requests for r in runs) / requests if requests else 0.0
    return Run(requests, max(r.seconds for r in runs), p50, max(r.p99_ms for r in runs),
               sum(r.errors for r in runs), detail, any(r.exhausted for r in runs))


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    previous = {s: signal.signal(s, interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

