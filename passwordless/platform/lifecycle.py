"""What the process knows about its own life: when it started and whether it is draining."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Lifecycle:
    started_at: float = field(default_factory=time.monotonic)
    draining: bool = False

    def uptime_seconds(self) -> int:
        return int(time.monotonic() - self.started_at)
