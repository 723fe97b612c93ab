"""GET /liveness, /readiness, /health and /metrics (API.md, "Health and metrics")."""

from __future__ import annotations

import hmac
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from passwordless import __version__
from passwordless.health import service
from passwordless.platform.errors import ApiError
from passwordless.web.openapi import METRICS, NONE, Op, integer, obj, string
from passwordless.web.parts import part

_NO_STORE = {"cache-control": "no-store"}


async def liveness(request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"}, headers=_NO_STORE)


async def readiness(request: Request) -> JSONResponse:
    d = part(request, "health", service.HealthDeps)
    result = await service.readiness(d.db, d.lifecycle, d.migrations)
    if result.ready:
        return JSONResponse({"status": "ready"}, headers=_NO_STORE)
    return JSONResponse({"status": "not_ready", "reason": result.reason}, status_code=503, headers=_NO_STORE)


async def health(request: Request) -> JSONResponse:
    d = part(request, "health", service.HealthDeps)
    result = await service.health(d.db, d.clock(), d.magic_link_ttl)
    body = {
        "status": "healthy" if result.healthy else "unhealthy",
        "version": __version__,
        "uptime_seconds": d.lifecycle.uptime_seconds(),
        "timestamp": int(time.time()),
        "checks": result.checks,
    }
    return JSONResponse(body, status_code=200 if result.healthy else 503, headers=_NO_STORE)


async def metrics(request: Request) -> Response:
    """Prometheus text format, behind `metrics.token` when one is set."""
    d = part(request, "health", service.HealthDeps)
    if not d.metrics_settings.enabled:
        raise ApiError(404, "not_found", "No such route.")
    token = d.metrics_settings.token
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token and not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "This endpoint needs the metrics token.", {"www-authenticate": "Bearer"})
    await service.refresh_gauges(d.db, d.metrics, d.clock())
    return Response(generate_latest(d.metrics.registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/liveness", liveness, methods=["GET"]),
    Route("/readiness", readiness, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

_STATUS = obj({"status": string()}, closed=False)
operations = {
    ("GET", "/liveness"): Op("Alive while the event loop runs.", {200: _STATUS}, tag="health"),
    ("GET", "/readiness"): Op(
        "Ready for traffic; 503 while migrations are pending, the database is unreachable or draining.",
        {200: _STATUS, 503: obj({"status": string(), "reason": string()}, required=["status"], closed=False)},
        tag="health",
    ),
    ("GET", "/health"): Op(
        "Health with its checks; 503 when one fails.",
        {code: obj({
            "status": string(), "version": string(), "uptime_seconds": integer(), "timestamp": integer(),
            "checks": {"type": "object", "additionalProperties": string()},
        }) for code in (200, 503)},
        tag="health",
    ),
    ("GET", "/metrics"): Op(
        "Prometheus text format; 404 when metrics.enabled is false.", {200: string()}, security=(METRICS, NONE),
        errors=(404,), media_type="text/plain", tag="health",
    ),
}
