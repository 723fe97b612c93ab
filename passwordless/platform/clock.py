"""Time as a parameter: services and workers take a Clock, so tests move time without sleeping."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]  # UNIX seconds, like time.time
