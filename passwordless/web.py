"""What routes share: the app's dependencies, the error shape, reading JSON bodies strictly,
the client's IP address behind trusted proxies, authentication and the session cookie."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from passwordless import openapi
from passwordless.config import Config
from passwordless.config_kinds import origin_of
from passwordless.deps import Client, Deps
from passwordless.errors import ApiError, invalid_request
from passwordless.sessions import service as sessions
from passwordless.sessions.service import Principal, SignIn

_HTTP_CODES = {
    404: ("not_found", "No such route."),
    405: ("method_not_allowed", "This method is not allowed here."),
}


def deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, message = _HTTP_CODES.get(exc.status_code, ("http_error", "The request failed."))
    return error_response(exc.status_code, code, message, exc.headers)


async def read_json(request: Request) -> dict[str, object]:
    """The body as a JSON object: 415 for another content type, 400 for anything malformed."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, absurd numbers or nesting
        raise invalid_request("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.")
    return data


class Fields:
    """Takes typed fields out of a JSON object; `done()` refuses any field left over."""

    def __init__(self, data: Mapping[str, object]) -> None:
        self._data = data
        self._taken: set[str] = set()

    def text(self, name: str, max_length: int) -> str:
        value = self.optional_text(name, max_length)
        if value is None:
            raise invalid_request(f"The field '{name}' is required.")
        return value

    def optional_text(self, name: str, max_length: int) -> str | None:
        self._taken.add(name)
        value = self._data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid_request(f"The field '{name}' must be a string.")
        if len(value) > max_length:
            raise invalid_request(f"The field '{name}' is longer than {max_length} characters.")
        if "\x00" in value or not _encodable(value):
            raise invalid_request(f"The field '{name}' holds characters that are not allowed.")
        return value

    def optional_object(self, name: str) -> dict[str, Any] | None:
        self._taken.add(name)
        value = self._data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid_request(f"The field '{name}' must be an object.")
        return value

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._taken)
        if unknown:
            raise invalid_request(f"Unknown field '{_printable(unknown[0])}'.")


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")  # lone surrogates from JSON escapes cannot be stored
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in name[:64])


def client_ip(scope: Scope, trusted_proxies: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The peer's address; X-Forwarded-For is believed only hop by hop through trusted proxies."""
    peer = scope.get("client")
    address = peer[0] if peer else ""
    networks = tuple(trusted_proxies)
    if not networks or not _within(address, networks):
        return address
    forwarded = [
        value.decode("latin-1") for key, value in scope.get("headers", []) if key == b"x-forwarded-for"
    ]
    hops = [hop.strip() for line in forwarded for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_ip(hop):
            return address
        address = hop
        if not _within(hop, networks):
            break
    return address


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _within(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def client_of(request: Request) -> Client:
    d = deps(request)
    return Client(client_ip(request.scope, d.trusted_proxies), request.headers.get("user-agent", "")[:512])


def cookie_name(config: Config) -> str:
    # __Host- binds the cookie to this exact host and forbids it over plain http.
    return "__Host-pl_session" if config.server.public_url.startswith("https://") else "pl_session"


def set_session_cookie(response: Response, config: Config, value: str) -> None:
    response.set_cookie(
        cookie_name(config), value, max_age=int(config.jwt.refresh_ttl), path="/", httponly=True,
        samesite="lax", secure=config.server.public_url.startswith("https://"),
    )


def clear_session_cookie(response: Response, config: Config) -> None:
    response.delete_cookie(
        cookie_name(config), path="/", httponly=True, samesite="lax",
        secure=config.server.public_url.startswith("https://"),
    )


def check_origin(request: Request) -> None:
    """A browser request that changes state must come from our own pages or an allowed origin.

    Our pages send `Referrer-Policy: no-referrer`, so a browser posts their forms with
    `Origin: null`; such a post is ours when Fetch Metadata (which no page can forge) says
    it came from this very origin."""
    config = deps(request).config
    origin = request.headers.get("origin")
    if origin in {origin_of(config.server.public_url), *config.cors.allowed_origins}:
        return
    if origin in (None, "null") and request.headers.get("sec-fetch-site") == "same-origin":
        return
    raise ApiError(403, "forbidden", "This request did not come from an allowed origin.")


async def authenticate(request: Request) -> Principal:
    """The signed-in user: a Bearer access token, else the browser session cookie (whose
    state-changing requests must pass the Origin check)."""
    d = deps(request)
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise sessions.unauthorized("Send the access token as 'Authorization: Bearer <token>'.")
        return await sessions.authenticate_bearer(d, token.strip())
    cookie = request.cookies.get(cookie_name(d.config))
    if not cookie:
        raise sessions.unauthorized()
    if request.method not in SAFE_METHODS:
        check_origin(request)
    return await sessions.authenticate_cookie(d, cookie)


def token_response(request: Request, sign_in: SignIn) -> JSONResponse:
    d = deps(request)
    body = {
        "access_token": sessions.access_token(d, sign_in),
        "token_type": "Bearer",
        "expires_in": d.signer.access_ttl,
        "refresh_token": sign_in.refresh_token,
        "user": {"id": sign_in.user.id, "email": sign_in.user.email},
    }
    return JSONResponse(body, headers={"cache-control": "no-store", "pragma": "no-cache"})


TOKEN_RESPONSE = openapi.obj({
    "access_token": openapi.string(), "token_type": openapi.string(enum=["Bearer"]),
    "expires_in": openapi.integer(), "refresh_token": openapi.string(),
    "user": openapi.obj({"id": openapi.string(), "email": openapi.string()}),
})
