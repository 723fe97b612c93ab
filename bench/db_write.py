"""How many write transactions per second Database.write carries.

Each transaction is the shape of a sign-in request: three INSERTs (ticket, queued email, audit
row) committed together. Compared, in the same run, with the same transactions in a plain loop on
one sqlite3 connection, one COMMIT each (no async overhead at all), and with the design we did not
pick: an asyncio.Lock and one thread hop per statement, as aiosqlite does. Prints a table; asserts
nothing.

    .venv/bin/python bench/db_write.py [--transactions 20000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from passwordless.platform import migrate
from passwordless.platform.db import SqliteDatabase, connect


def _one_sign_in(conn: sqlite3.Connection, i: int) -> None:
    now = int(time.time())
    conn.execute(
        "INSERT INTO sign_in_tickets (id, email, token_hash, code_hash, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (f"t{i}", f"user{i}@example.com", os.urandom(32), os.urandom(32), now, now + 900),
    )
    conn.execute(
        "INSERT INTO email_queue (id, to_address, subject, body_text, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (f"e{i}", f"user{i}@example.com", "Sign in", "x" * 600, now, now),
    )
    conn.execute(
        "INSERT INTO audit_logs (id, created_at, event_type, email, success) VALUES (?, ?, ?, ?, 1)",
        (f"a{i}", now, "magic_link_requested", f"user{i}@example.com"),
    )


def fresh_db(folder: Path, name: str) -> Path:
    path = folder / name
    migrate.apply_to_file(path, migrate.discover(migrate.default_dir()))
    return path


def plain_loop(path: Path, n: int) -> float:
    conn = connect(path)
    started = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        _one_sign_in(conn, i)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


async def through_writer(path: Path, n: int, concurrency: int) -> float:
    db = await SqliteDatabase.open(path)
    counter = iter(range(n))

    async def client() -> None:
        for i in counter:
            await db.write(_one_sign_in, i)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await db.close()
    return n / elapsed


async def hop_per_statement(path: Path, n: int, concurrency: int) -> float:
    """The alternative design: an asyncio.Lock and one thread hop per statement."""
    conn = connect(path)
    lock = asyncio.Lock()
    counter = iter(range(n))
    loop = asyncio.get_running_loop()
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)

    async def hop(sql: str, args: tuple[object, ...] = ()) -> None:
        await loop.run_in_executor(pool, conn.execute, sql, args)

    async def client() -> None:
        for i in counter:
            now = int(time.time())
            async with lock:
                await hop("BEGIN IMMEDIATE")
                await hop(
                    "INSERT INTO sign_in_tickets (id, email, token_hash, code_hash, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (f"t{i}", f"user{i}@example.com", os.urandom(32), os.urandom(32), now, now + 900),
                )
                await hop(
                    "INSERT INTO email_queue (id, to_address, subject, body_text, next_attempt_at, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (f"e{i}", f"user{i}@example.com", "Sign in", "x" * 600, now, now),
                )
                await hop(
                    "INSERT INTO audit_logs (id, created_at, event_type, email, success) VALUES (?, ?, ?, ?, 1)",
                    (f"a{i}", now, "magic_link_requested", f"user{i}@example.com"),
                )
                await hop("COMMIT")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    pool.shutdown()
    conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    n, c = args.transactions, args.concurrency
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ceiling = plain_loop(fresh_db(folder, "plain.db"), n)
        writer = asyncio.run(through_writer(fresh_db(folder, "writer.db"), n, c))
        hops = asyncio.run(hop_per_statement(fresh_db(folder, "hops.db"), n, c))
    print(f"{n} sign-in-shaped write transactions (3 INSERTs each), concurrency {c}, {os.cpu_count()} cores")
    print(f"{'design':<44}{'tx/s':>10}{'vs plain':>12}")
    for name, rate in [
        ("plain loop, one COMMIT per transaction", ceiling),
        ("Database.write: grouped on the loop", writer),
        ("asyncio.Lock + one hop per statement", hops),
    ]:
        print(f"{name:<44}{rate:>10.0f}{rate / ceiling:>11.0%}")


if __name__ == "__main__":
    main()
