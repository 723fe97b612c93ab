"""Which core does what (issue 19): the server under test (serve, or the bare app) alone on one
core, everything else the bench runs (itself, wrk, the open-loop generator, the passkey client,
the SMTP sink, PostgreSQL) on another, so that the load never takes the server's core.

The bench pins itself to the load core first (`pin_bench`); every process it starts after that
inherits the affinity (PostgreSQL's postmaster and its backends too), and only the servers are
started under `taskset -c SERVER_CORE` (taskset execs the command: the PID stays the server's).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Pinning:
    server_core: int | None  # None: not pinned
    load_core: int | None
    why_not: str = ""

    def server_command(self, command: list[str]) -> list[str]:
        return command if self.server_core is None else ["taskset", "-c", str(self.server_core), *command]

    def describe(self) -> str:
        if self.server_core is None:
            return f"not pinned: {self.why_not}"
        return (f"server under test (serve, bare app) on core {self.server_core}; the bench, wrk, the open-loop"
                f" generator, the passkey client, the SMTP sink and PostgreSQL on core {self.load_core}")


def plan() -> Pinning:
    """Server on the lowest core this process may use, the load on the next; none with one core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return Pinning(None, None, f"only {len(cores)} core available: server and load share it")
    if shutil.which("taskset") is None:
        return Pinning(None, None, "taskset is not installed (util-linux)")
    return Pinning(cores[0], cores[1])


def pin_bench(pinning: Pinning) -> None:
    """This process, and so everything it starts from now on, onto the load core."""
    if pinning.load_core is not None:
        os.sched_setaffinity(0, {pinning.load_core})
