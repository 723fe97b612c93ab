"""The explicit dependencies of every route, service and background task, built by the app's
lifespan (no module-level state)."""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from itsdangerous import URLSafeTimedSerializer

from passwordless.config.settings import Config
from passwordless.platform.clock import Clock
from passwordless.webhooks.events import Outbox
from passwordless.platform.db import Database
from passwordless.platform.lifecycle import Lifecycle
from passwordless.mail.render import Templates
from passwordless.platform.metrics import Metrics
from passwordless.platform.migrate import Migration
from passwordless.platform.ratelimit import RateLimiter
from passwordless.keys.signer import Signer

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
    outbox: Outbox  # where webhook events are queued (webhooks.events.emit), waking their worker
    # /auth/me shows how many passkeys a user has; sessions ask the composition root, not passkeys.
    count_passkeys: Callable[[sqlite3.Connection, str], int]
    metrics: Metrics


class _Request(Protocol):  # a Starlette request, named without importing Starlette (services use Deps)
    @property
    def app(self) -> Any: ...


def deps(request: _Request) -> Deps:
    """The app's dependencies, as its lifespan built them."""
    return cast(Deps, request.app.state.deps)
