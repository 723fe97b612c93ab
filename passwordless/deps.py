"""The explicit dependencies of every route, service and background task, built by the app's
lifespan (no module-level state)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import URLSafeTimedSerializer

from passwordless.config import Config
from passwordless.db import Database
from passwordless.lifecycle import Lifecycle
from passwordless.mail.render import Templates
from passwordless.metrics import Metrics
from passwordless.migrate import Migration
from passwordless.ratelimit import RateLimiter
from passwordless.signing import Signer

Clock = Callable[[], float]


@dataclass(frozen=True)
class Client:
    """Who is asking: the client's IP (behind trusted proxies) and browser."""

    ip: str
    user_agent: str


@dataclass(frozen=True)
class Deps:
    config: Config
    db: Database
    lifecycle: Lifecycle
    migrations: tuple[Migration, ...]  # what this version knows, to tell whether any is pending
    secret: str  # jwt.secret, or the development secret kept beside the database
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    clock: Clock
    signer: Signer
    templates: Templates
    limiter: RateLimiter
    cookies: URLSafeTimedSerializer  # signs the browser session cookie
    wake_mail: Callable[[], None]  # tells the mail worker a new email is queued
    metrics: Metrics
