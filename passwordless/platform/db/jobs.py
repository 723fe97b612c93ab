"""Units of work on their way to a database thread, and how their outcomes get back to the event
loop that awaits them."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from collections.abc import Callable
from typing import Any

STOP = None  # tells a database thread to finish
CHECKPOINT = "checkpoint"  # asks the writer thread for a checkpoint

Unit = Callable[[sqlite3.Connection], Any]


class DatabaseClosed(Exception):
    """The database was closed before the work could run."""


class Job:
    """A unit of work and the future its caller awaits. The future belongs to the caller's event
    loop: database threads settle it through `deliver`, never directly (the loop's own flush
    settles it in place)."""

    __slots__ = ("unit", "loop", "future")

    def __init__(self, unit: Unit, loop: asyncio.AbstractEventLoop) -> None:
        self.unit = unit
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()


Outcome = tuple[Job, bool, Any]  # the job, whether it succeeded, its result or exception


def deliver(outcomes: list[Outcome]) -> None:
    """Hand outcomes to their event loops: one wake-up per loop for a whole committed group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, mine in by_loop.items():
        try:
            loop.call_soon_threadsafe(settle, mine)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def settle(outcomes: list[Outcome]) -> None:
    for job, ok, value in outcomes:
        if job.future.done():  # the caller was cancelled: the work was done, its outcome is unread
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


Jobs = queue.SimpleQueue[Job | None]
Groups = queue.SimpleQueue[list[Job] | str | None]  # groups of write jobs, CHECKPOINT or STOP
