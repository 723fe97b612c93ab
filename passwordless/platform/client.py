"""Who is asking: the client's IP (behind trusted proxies) and browser, for limits and the audit log."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Client:
    ip: str
    user_agent: str
