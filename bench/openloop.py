"""Open-loop load for bench/run.py (issue 19): requests sent on a fixed schedule at an offered
rate, whatever the server does, each one's latency counted from the time it was due (bench/
latency.py has the arithmetic). One run per invocation, then one line on stdout:

    OPENLOOPRESULT {"offered": 1000, "achieved": 999.8, "endpoints": {"POST /auth/refresh":
                    {"n": .., "p50_ms": .., "p99_ms": .., "p99.9_ms": .., "max_ms": ..}}, "lag": {...},
                    "errors": 0, "statuses": {...}, "flags": [...], ...}

HTTP flows: one request per due time (--path, --method, --header; a body from --bodies, one JSON
per line, each sent once; or {"email": a new address} with --unique-emails TAG; or none).
Passkey (--passkey): one usernameless ceremony per due time, options + verify, as
bench/passkey_load.py's workers do; each worker (a user, a passkey, a keep-alive connection) is
enrolled before the clock starts with one magic-link token from --tokens. options' latency runs
from the ceremony's due time; verify's from when its signature was ready (the client's own
signing is not the server's time).

Requests go out on raw HTTP/1.1 keep-alive connections (passkey_load.Connection) from a pool:
--connections are opened before the clock starts, more are opened whenever all are busy, up to
--max-connections (passkey: the enrolled workers are the pool). A request that waits for one
still counts from its due time. "lag" is the generator's own lateness: how long after its due
time each request was handed to a connection (a busy generator shows here, a slow server does
not). The run uses uvloop when it imports, as the server does.

    .venv/bin/python bench/openloop.py --port N --rate 1000 --seconds 10 --path /auth/me --header "Authorization: ..."
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import latency
from passkey_load import Connection, HttpError, Worker, enrol

HOST = "127.0.0.1"
FINISH_SECONDS = 15.0  # after the last due time, how long answers still in flight are awaited
OPTIONS, VERIFY = "/auth/passkeys/login/options", "/auth/passkeys/login/verify"


class Pool:
    """Connections (or passkey workers) lent for one request (or ceremony) at a time."""

    def __init__(self, items: list[Any], cap: int, make: Callable[[], Any] | None = None) -> None:
        self.idle, self.opened, self.cap, self.make = list(items), len(items), cap, make
        self.busy = self.max_busy = 0
        self.waiting: list[asyncio.Future[Any]] = []

    async def take(self) -> Any:
        if self.idle:
            item = self.idle.pop()
        elif self.make is not None and self.opened < self.cap:
            self.opened += 1
            item = self.make()
        else:  # all busy and at the cap: wait for the next one given back (the wait counts)
            self.waiting.append(asyncio.get_running_loop().create_future())
            item = await self.waiting[-1]
        self.busy += 1
        self.max_busy = max(self.max_busy, self.busy)
        return item

    def give(self, item: Any) -> None:
        self.busy -= 1
        if self.waiting:
            self.waiting.pop(0).set_result(item)
        else:
            self.idle.append(item)


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # endpoint -> seconds from due to answer
    statuses: dict[str, int] = field(default_factory=dict)  # unexpected answers, "endpoint status" -> count
    socket_errors: int = 0
    first_error: str = ""
    completed: int = 0  # requests (ceremonies) answered as expected
    last_answer: float = 0.0

    def answer(self, endpoint: str, status: int, expect: int, since: float, data: bytes) -> bool:
        now = time.perf_counter()
        self.latencies.setdefault(endpoint, []).append(now - since)
        self.last_answer = max(self.last_answer, now)
        if status != expect:
            self.statuses[f"{endpoint} {status}"] = self.statuses.get(f"{endpoint} {status}", 0) + 1
            self.first_error = self.first_error or f"{endpoint} {status}: {data[:200]!r}"
        return status == expect

    def failed(self, exc: Exception) -> None:
        self.socket_errors += 1
        self.first_error = self.first_error or str(exc)


Fire = Callable[[int, float], Coroutine[Any, Any, None]]  # (request index, its due time)


async def on_schedule(rate: float, count: int, fire: Fire) -> tuple[float, list[float], int]:
    """Start fire(i, due) for each of `count` requests at its due time; wait for them to finish.
    The schedule's start, each request's lag (start of fire vs due) and how many never finished."""
    running: set[asyncio.Task[None]] = set()
    lags = []
    start = time.perf_counter() + 0.01
    for i in range(count):
        due = latency.due(start, i, rate)
        # Always yield once, even when late (answers are read between sends), then wait out the
        # rest: timers are coarse (about 1 ms) and may fire early, so the loop re-checks.
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        while (ahead := due - time.perf_counter()) > 0:
            await asyncio.sleep(ahead)
        lags.append(time.perf_counter() - due)
        task = asyncio.create_task(fire(i, due))
        running.add(task)
        task.add_done_callback(running.discard)
    unfinished = 0
    if running:
        _, pending = await asyncio.wait(set(running), timeout=FINISH_SECONDS)
        unfinished = len(pending)
        for task in pending:
            task.cancel()
    return start, lags, unfinished


def http_fire(args: argparse.Namespace, pool: Pool, tally: Tally) -> Fire:
    headers = dict(h.split(": ", 1) for h in args.header)
    endpoint = f"{args.method} {args.path}"
    bodies: list[Any] = []
    if args.bodies:
        bodies = [json.loads(line) for line in Path(args.bodies).read_text().splitlines() if line]
    elif args.unique_emails:
        bodies = [{"email": f"{args.unique_emails}-{i}@bench.test"} for i in range(int(args.rate * args.seconds))]

    async def fire(i: int, due: float) -> None:
        connection: Connection = await pool.take()
        try:
            status, data = await connection.request(args.method, args.path, bodies[i] if bodies else None, headers)
        except HttpError as exc:
            tally.failed(exc)
            return
        finally:
            pool.give(connection)
        tally.completed += tally.answer(endpoint, status, args.expect, due, data)

    if bodies and len(bodies) < int(args.rate * args.seconds):
        raise SystemExit(f"openloop: {len(bodies)} bodies for {int(args.rate * args.seconds)} requests")
    return fire


def passkey_fire(pool: Pool, tally: Tally) -> Fire:
    async def fire(i: int, due: float) -> None:
        worker: Worker = await pool.take()
        try:
            status, data = await worker.connection.request("POST", OPTIONS, {})
            if not tally.answer(f"POST {OPTIONS}", status, 200, due, data):
                return
            assertion = worker.authenticator.get_assertion(json.loads(data), worker.origin)
            signed = time.perf_counter()
            status, data = await worker.connection.request("POST", VERIFY, {"credential": assertion})
            tally.completed += tally.answer(f"POST {VERIFY}", status, 200, signed, data)
        except HttpError as exc:
            tally.failed(exc)
        finally:
            pool.give(worker)

    return fire


async def make_pool(args: argparse.Namespace) -> Pool:
    """Everything opened (and, for passkeys, enrolled) before the clock starts."""
    if args.passkey:
        tokens = Path(args.tokens).read_text().split()
        workers = await asyncio.gather(*(enrol(HOST, args.port, args.origin, t) for t in tokens))
        return Pool(list(workers), len(workers))
    connections = [Connection(HOST, args.port) for _ in range(args.connections)]
    await asyncio.gather(*(c.connect() for c in connections))
    return Pool(connections, args.max_connections, lambda: Connection(HOST, args.port))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pool = await make_pool(args)
    tally = Tally()
    fire = passkey_fire(pool, tally) if args.passkey else http_fire(args, pool, tally)
    cpu = time.process_time()
    start, lags, unfinished = await on_schedule(args.rate, int(args.rate * args.seconds), fire)
    wall = time.perf_counter() - start
    for item in pool.idle:
        (item.connection if args.passkey else item).close()
    lag = latency.summary_ms(lags)
    achieved = latency.achieved_rate(tally.completed, start, tally.last_answer)
    errors = sum(tally.statuses.values()) + tally.socket_errors + unfinished
    flags = latency.flags(args.rate, achieved, lag["p99_ms"], errors)
    if pool.max_busy >= pool.cap:
        flags.append(f"all {pool.cap} connections busy at once: the generator's pool, not only the server, held"
                     " requests back")
    return {
        "offered": args.rate, "scheduled": len(lags), "completed": tally.completed, "achieved": achieved,
        "endpoints": {name: latency.summary_ms(times) for name, times in tally.latencies.items()},
        "lag": lag, "errors": errors, "statuses": tally.statuses, "socket_errors": tally.socket_errors,
        "unfinished": unfinished, "first_error": tally.first_error, "flags": flags,
        "connections": pool.opened, "max_busy": pool.max_busy,
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "client_cpu": (time.process_time() - cpu) / wall,  # of one core, this generator's own
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Open-loop load for bench/run.py.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests (passkey: ceremonies) per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", default="/")
    parser.add_argument("--expect", type=int, default=200, help="the status every answer must have")
    parser.add_argument("--header", action="append", default=[], help='"Name: value", repeatable')
    parser.add_argument("--bodies", help="a file of JSON bodies, one per line, each sent once")
    parser.add_argument("--unique-emails", help='send {"email": TAG-i@bench.test}, a new address each time')
    parser.add_argument("--connections", type=int, default=16, help="opened before the clock starts")
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument("--passkey", action="store_true", help="usernameless passkey ceremonies")
    parser.add_argument("--origin", help="(passkey) the origin the server expects")
    parser.add_argument("--tokens", help="(passkey) magic-link tokens, one per worker")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    print("OPENLOOPRESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
