"""The open-loop generator's arithmetic, kept apart so that it can be read at a glance: when each
request is due, percentiles, and when a run is flagged.

Request i of a run at `rate` per second is due at start + i / rate, whatever happened to the
requests before it (open loop). Its latency runs from that due time to the end of its answer, so
a request that left late (waiting for a free connection, or for the generator itself) counts the
wait: a stall of the server shows in every request due during it, not only in the few that were
in flight (no coordinated omission).
"""

from __future__ import annotations

import math

SHORTFALL = 0.98  # a run whose achieved rate is under this share of the offered rate is flagged
BEHIND_MS = 2.0  # a run whose generator sent its p99 request later than this is flagged


def due(start: float, i: int, rate: float) -> float:
    """When request i (from 0) is due, on the schedule that began at `start`."""
    return start + i / rate


def percentile(ordered: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ascending values: the smallest value with at least
    p % of the values at or below it. 0.0 for no values."""
    if not ordered:
        return 0.0
    # 1-based; p99 of 1,000 values is the 990th. Rounded first: 99.9 / 100 * 1000 is 999.0000000000001
    # in floating point, which would take the 1000th.
    rank = math.ceil(round(p / 100 * len(ordered), 9))
    return ordered[max(rank, 1) - 1]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """Count, p50, p99, p99.9 and max of durations in seconds, in milliseconds."""
    ordered = sorted(seconds)
    out = {f"p{label}_ms": percentile(ordered, p) * 1000 for label, p in (("50", 50), ("99", 99), ("99.9", 99.9))}
    return {"n": float(len(ordered)), **out, "max_ms": (ordered[-1] * 1000) if ordered else 0.0}


def achieved_rate(completed: int, start: float, last_answer: float) -> float:
    """Answers per second from the schedule's start to the last answer: a server that falls
    behind stretches the span and the rate falls short of the offered one."""
    span = last_answer - start
    return completed / span if completed and span > 0 else 0.0


def flags(offered: float, achieved: float, lag_p99_ms: float, errors: int) -> list[str]:
    """Why a run's figures are not a clean measure of the server at the offered rate."""
    out = []
    if achieved < SHORTFALL * offered:
        out.append(f"achieved {achieved:,.0f}/s < {SHORTFALL:.0%} of {offered:,.0f}/s offered")
    if lag_p99_ms > BEHIND_MS:
        out.append(f"generator behind its schedule (p99 lag {lag_p99_ms:.1f} ms > {BEHIND_MS:.0f} ms)")
    if errors:
        out.append(f"{errors} errors")
    return out
