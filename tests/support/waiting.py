"""Waiting for something another thread, process or task does: poll a check until it gives a
truthy value (returned) or the time is up (an AssertionError naming what was awaited)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str = "the condition", timeout: float = 10.0, every: float = 0.01) -> T:
    """Blocks between checks: for plain tests, or in a thread next to an event loop."""
    polls = _polls(check, what, timeout)
    while True:
        try:
            next(polls)
        except StopIteration as done:
            result: T = done.value
            return result
        time.sleep(every)


async def until(check: Callable[[], T], what: str = "the condition", timeout: float = 10.0, every: float = 0.01) -> T:
    """Sleeps on the event loop between checks, so the app's own tasks (workers) run meanwhile."""
    polls = _polls(check, what, timeout)
    while True:
        try:
            next(polls)
        except StopIteration as done:
            result: T = done.value
            return result
        await asyncio.sleep(every)


def _polls(check: Callable[[], T], what: str, timeout: float) -> Generator[None, None, T]:
    """One step per failed check (the caller sleeps between steps); returns the first truthy value."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value {result!r}")
        yield
    return result
