"""The app in-process: its lifespan running behind an httpx client, and a clock tests can move."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette

from passwordless.app import create_app
from passwordless.config.settings import Config
from passwordless.deps import Deps

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


def deps_of(app: Starlette) -> Deps:
    deps: Deps = app.state.deps
    return deps


class FakeClock:
    """A clock that stands still until moved: `clock.advance(seconds)`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
