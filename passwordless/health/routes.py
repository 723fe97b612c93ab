"""GET /liveness, /readiness and /health (API.md, "Health and metrics")."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from passwordless import __version__
from passwordless.health import service
from passwordless.web import deps

_NO_STORE = {"cache-control": "no-store"}


async def liveness(request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"}, headers=_NO_STORE)


async def readiness(request: Request) -> JSONResponse:
    d = deps(request)
    result = await service.readiness(d.db, d.lifecycle, d.migrations)
    if result.ready:
        return JSONResponse({"status": "ready"}, headers=_NO_STORE)
    return JSONResponse({"status": "not_ready", "reason": result.reason}, status_code=503, headers=_NO_STORE)


async def health(request: Request) -> JSONResponse:
    d = deps(request)
    result = await service.health(d.db)
    body = {
        "status": "healthy" if result.healthy else "unhealthy",
        "version": __version__,
        "uptime_seconds": d.lifecycle.uptime_seconds(),
        "timestamp": int(time.time()),
        "checks": result.checks,
    }
    return JSONResponse(body, status_code=200 if result.healthy else 503, headers=_NO_STORE)


routes = [
    Route("/liveness", liveness, methods=["GET"]),
    Route("/readiness", readiness, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
]
