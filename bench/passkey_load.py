"""Passkey sign-in load for bench/run.py: wrk cannot do it, as every verify needs an ECDSA
signature over the challenge the server has just handed out.

Each of --workers workers is one browser with one platform authenticator
(tests/support/authenticator.py's SoftAuthenticator) and one keep-alive HTTP/1.1 connection. Before the
clock starts every worker signs its own user in with a prepared magic-link token (from
--tokens, one per line) and registers a passkey through the real API; so sign counts never race.
Then each worker repeats the usernameless ceremony, as a browser's passkey button does:

    POST /auth/passkeys/login/options {}  ->  sign the challenge  ->  POST /auth/passkeys/login/verify

and a ceremony counts when verify answered 200. One warm-up run, then --repeat timed runs; after
each, one line on stdout:

    PASSKEYRESULT {"ceremonies": N, "seconds": S, "p50_ms": X, "p99_ms": Y,
                   "requests": {"options": {"p50_ms": X, "p99_ms": Y}, "verify": {...}},
                   "errors": N, "statuses": {...}, ...}

The client is a minimal HTTP/1.1 client on asyncio streams: much cheaper per request than
httpx, and this process shares the machine's two cores with the server it measures.

    .venv/bin/python bench/passkey_load.py --port N --origin https://auth.bench.test --tokens FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests.support.authenticator

from tests.support.authenticator import SoftAuthenticator  # noqa: E402

TIMEOUT = 10.0  # seconds allowed for one request before it counts as a socket error
IDLE_REOPEN_SECONDS = 4.0  # a keep-alive connection idle this long is opened afresh (the server closes at 5 s)


class HttpError(Exception):
    """The connection failed or answered something that is not HTTP/1.1."""


class Connection:
    """One keep-alive HTTP/1.1 connection: requests one at a time, Content-Length bodies (and
    chunked ones, should the server ever send them)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used_at = 0.0

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # The server closes a connection idle for 5 s (server.py's KEEP_ALIVE_SECONDS): one left
        # idle that long (between a warm-up and a run, say) is opened afresh, as browsers do,
        # rather than failing its next request.
        if self.writer is not None and time.monotonic() - self.used_at > IDLE_REOPEN_SECONDS:
            self.close()
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.used_at = time.monotonic()
        return self.reader, self.writer

    async def connect(self) -> None:
        """Open the connection now rather than at the first request."""
        await self._open()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._request(method, path, body, headers or {}), TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ValueError) as exc:
            self.close()  # the next request opens a fresh connection
            raise HttpError(f"{type(exc).__name__}: {exc}") from None

    async def _request(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
        reader, writer = await self._open()
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(payload)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        answer = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        if answer.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                data += await reader.readexactly(size + 2)
                data = data[:-2]
            await reader.readuntil(b"\r\n")
        else:
            data = await reader.readexactly(int(answer.get("content-length", "0")))
        if answer.get("connection", "").lower() == "close":
            self.close()
        return status, data


@dataclass
class Tally:
    """What the workers did during one run."""

    latencies: list[float] = field(default_factory=list)  # seconds per successful ceremony
    requests: dict[str, list[float]] = field(default_factory=lambda: {"options": [], "verify": []})  # per request
    statuses: dict[str, int] = field(default_factory=dict)  # non-2xx answers, "route status" -> count
    socket_errors: int = 0
    first_error: str = ""

    def failed(self, what: str) -> None:
        self.statuses[what] = self.statuses.get(what, 0) + 1


@dataclass
class Worker:
    connection: Connection
    authenticator: SoftAuthenticator
    origin: str


async def enrol(host: str, port: int, origin: str, token: str) -> Worker:
    """Sign in with a magic-link token, register a passkey; the worker that will use it."""
    connection = Connection(host, port)
    status, data = await connection.request("POST", "/auth/magic-link/verify", {"token": token})
    if status != 200:
        raise SystemExit(f"passkey_load: signing in a worker's user answered {status}: {data[:200]!r}")
    bearer = {"Authorization": f"Bearer {json.loads(data)['access_token']}"}
    status, data = await connection.request("POST", "/auth/passkeys/register/options", {}, bearer)
    if status != 200:
        raise SystemExit(f"passkey_load: register/options answered {status}: {data[:200]!r}")
    authenticator = SoftAuthenticator()
    credential = authenticator.make_credential(json.loads(data), origin)
    status, data = await connection.request(
        "POST", "/auth/passkeys/register/verify", {"credential": credential, "name": "bench"}, bearer
    )
    if status != 201:
        raise SystemExit(f"passkey_load: register/verify answered {status}: {data[:200]!r}")
    return Worker(connection, authenticator, origin)


async def ceremony(worker: Worker, tally: Tally) -> None:
    """One usernameless sign-in; its duration goes to the tally when it succeeds."""
    started = time.perf_counter()
    try:
        status, data = await worker.connection.request("POST", "/auth/passkeys/login/options", {})
        asked = time.perf_counter()
        if status != 200:
            tally.failed(f"login/options {status}")
            tally.first_error = tally.first_error or f"login/options {status}: {data[:200]!r}"
            return
        assertion = worker.authenticator.get_assertion(json.loads(data), worker.origin)
        signed = time.perf_counter()
        status, data = await worker.connection.request("POST", "/auth/passkeys/login/verify", {"credential": assertion})
        if status != 200:
            tally.failed(f"login/verify {status}")
            tally.first_error = tally.first_error or f"login/verify {status}: {data[:200]!r}"
            return
    except HttpError as exc:
        tally.socket_errors += 1
        tally.first_error = tally.first_error or str(exc)
        return
    done = time.perf_counter()
    tally.latencies.append(done - started)
    tally.requests["options"].append(asked - started)
    tally.requests["verify"].append(done - signed)


def percentile(ordered: list[float], p: float) -> float:
    """The p-th percentile of sorted durations in seconds, in milliseconds."""
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else 0.0


async def timed_run(workers: list[Worker], seconds: float) -> dict[str, Any]:
    """Every worker runs ceremonies back to back until the time is up (the one in flight then
    finishes and counts); the rate is over the time until the last one finished."""
    tally = Tally()
    cpu = time.process_time()
    started = time.perf_counter()
    end = started + seconds

    async def loop(worker: Worker) -> None:
        while time.perf_counter() < end:
            await ceremony(worker, tally)

    await asyncio.gather(*(loop(w) for w in workers))
    elapsed = time.perf_counter() - started
    ordered = sorted(tally.latencies)
    return {
        "ceremonies": len(ordered),
        "seconds": elapsed,
        "rate": len(ordered) / elapsed,
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        # Each request alone, from sending it to its whole answer (the client's own signing,
        # between the two, is in the ceremony's time only).
        "requests": {name: {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}
                     for name, times in ((n, sorted(t)) for n, t in tally.requests.items())},
        "errors": sum(tally.statuses.values()) + tally.socket_errors,
        "statuses": tally.statuses,
        "socket_errors": tally.socket_errors,
        "first_error": tally.first_error,
        # This client shares the cores with the server: how much of one core it took.
        "client_cpu": (time.process_time() - cpu) / elapsed,
    }


async def main_async(args: argparse.Namespace) -> None:
    tokens = Path(args.tokens).read_text().split()
    if len(tokens) < args.workers:
        raise SystemExit(f"passkey_load: {args.workers} workers need {args.workers} tokens, got {len(tokens)}")
    workers = await asyncio.gather(*(enrol("127.0.0.1", args.port, args.origin, t) for t in tokens[: args.workers]))
    print(f"PASSKEYREADY {len(workers)}", flush=True)
    try:
        for run in range(args.repeat + 1):
            result = await timed_run(list(workers), args.warmup if run == 0 else args.duration)
            result["warmup"] = run == 0
            print("PASSKEYRESULT " + json.dumps(result), flush=True)
    finally:
        for worker in workers:
            worker.connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Passkey sign-in load for bench/run.py.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--origin", required=True, help="the origin the server expects (webauthn.origins)")
    parser.add_argument("--tokens", required=True, help="a file of magic-link tokens, one per worker")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
