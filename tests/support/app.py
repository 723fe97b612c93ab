"""The app in-process: its lifespan running behind an httpx client, and a clock tests can move."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

import httpx
from starlette.applications import Starlette

from passwordless.app import create_app
from passwordless.config.settings import Config
from passwordless.parts import Parts
from tests.support.signin import bearer, request_sign_in, rows, verify_code, verify_link

PEER = ("203.0.113.7", 50000)


@asynccontextmanager
async def running(
    config: Config, clock: Callable[[], float] = time.time, peer: tuple[str, int] = PEER
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app with its lifespan running (database open, migrations applied) and a client
    connecting from `peer`. Pass a clock to move time without sleeping."""
    app = create_app(config, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url=config.server.public_url) as client:
            yield app, client


def deps_of(app: Starlette) -> Parts:
    """What the app's lifespan built: each feature's dependencies (parts.py)."""
    return Parts(**{name: getattr(app.state, name) for name in Parts.__dataclass_fields__})


class FakeClock:
    """A clock that stands still until moved: `clock.advance(seconds)`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class AppServer:
    """The app in-process and what every test does to it; a test file subclasses it (as its
    `Server`) with the calls of its own feature and starts it with `Server.serving(config)`."""

    app: Starlette
    http: httpx.AsyncClient
    config: Config
    clock: Callable[[], float]

    @classmethod
    @asynccontextmanager
    async def serving(cls, config: Config, clock: Callable[[], float] | None = None) -> AsyncIterator[Self]:
        """`running` as this kind of server; its clock stands still (a FakeClock) unless one is given."""
        chosen = FakeClock() if clock is None else clock
        async with running(config, clock=chosen) as (app, http):
            yield cls(app, http, config, chosen)

    async def sign_in(self, email: str, by_code: bool = False) -> dict[str, Any]:
        """A token response for `email` by magic link or code (the user is created on first sign-in)."""
        token, code = await request_sign_in(self.http, self.config, email)
        response = await (verify_code(self.http, email, code) if by_code else verify_link(self.http, token))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def bearer(self, email: str) -> dict[str, str]:
        return bearer((await self.sign_in(email))["access_token"])

    def deps(self) -> Parts:
        return deps_of(self.app)

    def audit(self, event_type: str) -> list[dict[str, Any]]:
        found = rows(self.config, "SELECT * FROM audit_logs WHERE event_type = ? ORDER BY id", event_type)
        for row in found:
            row["details"] = json.loads(row["details"]) if row["details"] else {}
        return found

