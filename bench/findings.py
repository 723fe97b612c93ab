"""What one setup of the bench measured, for the report (bench/report.py, bench/goals.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flows import FlowResult
from openloop_runs import OpenLoopResult
from other_flows import Soak, Startup


@dataclass
class Findings:
    """Everything one run measured, for the report."""

    flows: list[str]
    load_before: tuple[float, float, float]
    busy_before: float
    foreign_share: float = 0.0  # of all cores, used during the run by processes the run did not start
    results: list[FlowResult] = field(default_factory=list)
    openloop: list[OpenLoopResult] = field(default_factory=list)
    startups: list[Startup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    idle_mb: float | None = None
    load_mb: float | None = None
    soak: Soak | None = None
    seconds: float = 0.0
    label: str = ""  # the setup: engine, servers and stack
    stack: str = ""  # "standard" or "pure": the one asked for
    stacks_seen: list[str] = field(default_factory=list)  # what each server said it ran on (stack.py)
    servers: int = 1
    engine: str = ""  # "sqlite" | "postgres"
