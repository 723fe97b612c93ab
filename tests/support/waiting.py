"""Waiting for something another thread, process or task does: poll a check until it gives a
truthy value (returned) or the time is up (an AssertionError naming what was awaited)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str = "the condition", timeout: float = 10.0, every: float = 0.01) -> T:
    """Blocks between checks: for plain tests, or in a thread next to an event loop."""
    poll = _Poll(check, what, timeout)
    while not poll.done():
        time.sleep(every)
    return poll.result


async def until(check: Callable[[], T], what: str = "the condition", timeout: float = 10.0, every: float = 0.01) -> T:
    """Sleeps on the event loop between checks, so the app's own tasks (workers) run meanwhile."""
    poll = _Poll(check, what, timeout)
    while not poll.done():
        await asyncio.sleep(every)
    return poll.result


class _Poll(Generic[T]):
    """One check at a time against one deadline; the caller sleeps its own way between them."""

    def __init__(self, check: Callable[[], T], what: str, timeout: float) -> None:
        self.check, self.what, self.deadline = check, what, time.monotonic() + timeout

    def done(self) -> bool:
        self.result = self.check()
        if self.result:
            return True
        if time.monotonic() > self.deadline:
            raise AssertionError(f"timed out waiting for {self.what}; last value {self.result!r}")
        return False
