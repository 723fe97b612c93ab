"""What HTTP routes share about sessions: authenticating a request (Bearer token or the browser
session cookie), the cookie itself, and the token response of every sign-in."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from passwordless.config.settings import Config
from passwordless.deps import deps
from passwordless.sessions import service as sessions
from passwordless.sessions.service import Principal, SignIn
from passwordless.web import openapi
from passwordless.web.origin import SAFE_METHODS, check_origin


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


# The token response, as the OpenAPI document describes it (every sign-in and refresh answers it).
TOKEN_RESPONSE = openapi.obj({
    "access_token": openapi.string(), "token_type": openapi.string(enum=["Bearer"]),
    "expires_in": openapi.integer(), "refresh_token": openapi.string(),
    "user": openapi.obj({"id": openapi.string(), "email": openapi.string()}),
})
