"""Pure ASGI middleware: request id, security headers, access log and the last-resort 500
(RequestContext); the request body limit (BodyLimit); CORS with errors in the API's shape."""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from passwordless.errors import ApiError
from passwordless.logs import request_id
from passwordless.metrics import Metrics
from passwordless.web import client_ip, error_response

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("passwordless.access")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts: bool,
        trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.hsts = hsts
        self.trusted_proxies = trusted_proxies
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._add_headers(MutableHeaders(scope=message), rid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            logger.exception("unhandled_error", extra={"method": scope["method"], "path": scope["path"]})
            if status:
                raise  # the response has begun: the server can only drop the connection
            response = error_response(500, "internal_error", "Something went wrong on our side.")
            await response(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            self._log_access(scope, status, elapsed)
            self._count(scope, status, elapsed)
            request_id.reset(token)

    def _add_headers(self, headers: MutableHeaders, rid: str) -> None:
        for name, value in _SECURITY_HEADERS.items():
            headers.setdefault(name, value)
        headers["x-request-id"] = rid
        if self.hsts:
            headers.setdefault("strict-transport-security", "max-age=63072000; includeSubDomains")
        if headers.get("content-type", "").startswith("text/html"):
            headers.setdefault("content-security-policy", _HTML_CSP)

    def _count(self, scope: Scope, status: int, elapsed: float) -> None:
        # The route template ("/auth/sessions/{id}") the router matched, so labels stay bounded.
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        labels = (scope["method"] if scope["method"] in _METHODS else "other", route, str(status or 500))
        self.metrics.http_requests.labels(*labels).inc()
        self.metrics.http_duration.labels(*labels).observe(elapsed)

    def _log_access(self, scope: Scope, status: int, elapsed: float) -> None:
        # The path only: a query string can carry a sign-in token.
        access_logger.info(
            "request",
            extra={
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "client": client_ip(scope, self.trusted_proxies),
            },
        )


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE_REQUEST_ID.fullmatch(text) else None
    return None


class BodyLimit:
    """413 for a body over the limit, whether it announces its length or streams it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, "payload_too_large", self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."

    def _too_large(self) -> ASGIApp:
        return error_response(413, "payload_too_large", self._message(), {"connection": "close"})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class Cors(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the API's error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        return error_response(400, "invalid_request", "This cross-origin request is not allowed.")
