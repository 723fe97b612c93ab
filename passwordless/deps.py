"""The explicit dependencies of every route and background task, built by the app's lifespan."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from passwordless.config import Config
from passwordless.db import Database
from passwordless.lifecycle import Lifecycle
from passwordless.migrate import Migration


@dataclass(frozen=True)
class Deps:
    config: Config
    db: Database
    lifecycle: Lifecycle
    migrations: tuple[Migration, ...]  # what this version knows, to tell whether any is pending
    secret: str  # jwt.secret, or the development secret kept beside the database
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
