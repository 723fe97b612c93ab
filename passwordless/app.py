"""create_app(config): the middleware, the route table and the lifespan that builds every
dependency (no module-level state)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from passwordless import migrate
from passwordless.config import Config
from passwordless.crypto import load_or_create_dev_secret
from passwordless.db import Database
from passwordless.deps import Deps
from passwordless.errors import ApiError
from passwordless.health import routes as health
from passwordless.lifecycle import Lifecycle
from passwordless.middleware import BodyLimit, RequestContext
from passwordless.web import handle_api_error, handle_http_exception

logger = logging.getLogger(__name__)


def create_app(config: Config, lifecycle: Lifecycle | None = None) -> Starlette:
    life = lifecycle or Lifecycle()
    trusted = tuple(ipaddress.ip_network(p) for p in config.server.trusted_proxies)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db_path = Path(config.database.path)
        known = migrate.discover(migrate.default_dir())
        await asyncio.to_thread(migrate.apply_to_file, db_path, known)
        db = await Database.open(db_path)
        try:
            secret = config.jwt.secret or await asyncio.to_thread(load_or_create_dev_secret, db_path.parent)
            app.state.deps = Deps(config, db, life, known, secret, trusted)
            logger.info("started", extra={"public_url": config.server.public_url, "environment": config.environment})
            yield
        finally:
            await db.close()
            logger.info("stopped")

    app = Starlette(
        routes=[*health.routes],
        middleware=_middleware(config, trusted),
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception},
        lifespan=lifespan,
    )
    app.state.lifecycle = life
    return app


def _middleware(
    config: Config, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> list[Middleware]:
    hsts = config.server.public_url.startswith("https://")
    stack = [Middleware(RequestContext, hsts=hsts, trusted_proxies=trusted)]
    if config.cors.allow_all or config.cors.allowed_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=["*"] if config.cors.allow_all else list(config.cors.allowed_origins),
                allow_credentials=not config.cors.allow_all,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id", "retry-after"],
                max_age=600,
            )
        )
    stack.append(Middleware(BodyLimit, max_bytes=config.server.max_body_bytes))
    return stack
