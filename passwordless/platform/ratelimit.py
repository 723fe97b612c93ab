"""In-memory rate limits per client IP (GCRA: one number per key, bursts up to the count).
The per-email limit is counted from stored sign-in tickets instead, so it survives a restart."""

from __future__ import annotations

import functools
import ipaddress

from passwordless.config.kinds import Rate

MAX_KEYS = 100_000  # past this, keys whose window has passed are forgotten


class RateLimiter:
    def __init__(self) -> None:
        self._next_free: dict[str, float] = {}

    def hit(self, key: str, rate: Rate, now: float) -> float | None:
        """Count one event; the seconds to wait if it is over the limit (then it is not counted)."""
        interval = rate.per_seconds / rate.count
        tolerance = rate.per_seconds - interval
        at = max(self._next_free.get(key, now), now)
        if at - now > tolerance:
            return at - now - tolerance
        self._next_free[key] = at + interval
        if len(self._next_free) > MAX_KEYS:
            self._forget_before(now)
        return None

    def _forget_before(self, now: float) -> None:
        self._next_free = {k: v for k, v in self._next_free.items() if v > now}


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
