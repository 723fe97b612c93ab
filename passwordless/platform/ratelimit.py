"""In-memory rate limits per client IP (GCRA: one number per key, bursts up to the count).
The per-email limit is counted from stored sign-in tickets instead, so it survives a restart."""

from __future__ import annotations

import functools
import ipaddress
import itertools

from passwordless.config.kinds import Rate

MAX_KEYS = 100_000  # past this, keys whose window has passed are forgotten
SWEEP_STEP = 8  # entries looked at per new key past MAX_KEYS: eviction costs O(1), never a full scan


class RateLimiter:
    def __init__(self) -> None:
        # Insertion order is the sweep order: a key hit again moves to the end, so the front holds
        # the keys left alone the longest, the ones most likely to have expired.
        self._next_free: dict[str, float] = {}
        self.swept = 0  # entries the sweeps have looked at, in total (tests count the work)

    def hit(self, key: str, rate: Rate, now: float) -> float | None:
        """Count one event; the seconds to wait if it is over the limit (then it is not counted)."""
        interval = rate.per_seconds / rate.count
        tolerance = rate.per_seconds - interval
        at = max(self._next_free.pop(key, now), now)
        if at - now > tolerance:
            self._next_free[key] = at
            return at - now - tolerance
        self._next_free[key] = at + interval
        if len(self._next_free) > MAX_KEYS:
            self._sweep(now)
        return None

    def first_in_window(self, key: str, seconds: float, now: float) -> bool:
        """True once per `seconds` for a key: lets a flood of refusals leave one audit row per window."""
        return self.hit(key, Rate(1, seconds), now) is None

    def _sweep(self, now: float) -> None:
        """Forgets the expired keys among the SWEEP_STEP oldest; live ones go to the back of the line.
        Under a flood of live keys the table may outgrow MAX_KEYS: forgetting a live key would lift its
        limit, which is what the flood wants."""
        for key in list(itertools.islice(self._next_free, SWEEP_STEP)):
            self.swept += 1
            free_at = self._next_free.pop(key)
            if free_at > now:
                self._next_free[key] = free_at



@functools.lru_cache(maxsize=4096)  # parsed on every limited request; clients come back
def client_key(ip: str) -> str:
    """IPv4 addresses count alone; IPv6 clients are grouped by /64 (one subscriber's network)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6 and not address.ipv4_mapped:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if address.version == 6 else str(address)
