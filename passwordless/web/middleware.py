"""Pure ASGI middleware: request id, security headers, access log and the last-resort 500
(RequestContext); the request body limit (BodyLimit); CORS with errors in the API's shape."""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from passwordless.platform.crypto import random_bytes
from passwordless.platform.errors import ApiError
from passwordless.platform.logs import request_id
from passwordless.platform.metrics import Metrics
from passwordless.web.client import client_ip
from passwordless.web.errors import error_response

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("passwordless.access")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HTML_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


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
        self.defaults = _SECURITY_HEADERS + ((_HSTS,) if hsts else ())
        self.trusted_proxies = trusted_proxies
        self.metrics = metrics
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}  # labels → (counter, histogram)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_request_id(scope) or random_bytes(16).hex()
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = self._with_headers(message.get("headers", ()), rid)
            await send(message)

        try:
            if b"%00" in scope["query_string"] or "\x00" in scope["path"]:
                # No text we keep or look up holds NUL (PostgreSQL cannot even store it): refused
                # at the door, the same on both engines.
                refused = error_response(400, "invalid_request", "The address may not contain NUL characters.")
                await refused(scope, receive, send_with_headers)
            else:
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

    def _with_headers(self, headers: Iterable[tuple[bytes, bytes]], rid: str) -> list[tuple[bytes, bytes]]:
        """The response's headers plus ours: the security defaults where the route set none,
        the request id, and the page policy on HTML."""
        result = [(name, value) for name, value in headers if name.lower() != b"x-request-id"]
        present = {name.lower(): value for name, value in result}
        result.extend(header for header in self.defaults if header[0] not in present)
        result.append((b"x-request-id", rid.encode("latin-1")))
        if present.get(b"content-type", b"").startswith(b"text/html") and b"content-security-policy" not in present:
            result.append((b"content-security-policy", _HTML_CSP))
        return result

    def _count(self, scope: Scope, status: int, elapsed: float) -> None:
        # The route template ("/auth/sessions/{id}") the router matched, so labels stay bounded.
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        labels = (scope["method"] if scope["method"] in _METHODS else "other", route, str(status or 500))
        series = self._series.get(labels)
        if series is None:  # labels() takes a lock and builds a key: once per series, not per request
            series = self._series[labels] = (
                self.metrics.http_requests.labels(*labels), self.metrics.http_duration.labels(*labels)
            )
        series[0].inc()
        series[1].observe(elapsed)

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
