"""What HTTP routes share about sessions: authenticating a request (Bearer token or the browser
session cookie), the cookie itself, and the token response of every sign-in."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from passwordless.sessions import service as sessions
from passwordless.sessions.service import Principal, SessionDeps, SignIn
from passwordless.web import openapi
from passwordless.web.origin import SAFE_METHODS, check_origin
from passwordless.web.parts import part


def session_deps(request: Request) -> SessionDeps:
    return part(request, "sessions", SessionDeps)


def cookie_name(deps: SessionDeps) -> str:
    # __Host- binds the cookie to this exact host and forbids it over plain http.
    return "__Host-pl_session" if deps.public_url.startswith("https://") else "pl_session"


def set_session_cookie(response: Response, deps: SessionDeps, sign_in: SignIn) -> None:
    """The browser session cookie for a new sign-in."""
    response.set_cookie(
        cookie_name(deps), sessions.cookie_value(deps, sign_in.session_id), max_age=int(deps.jwt.refresh_ttl),
        path="/", httponly=True, samesite="lax", secure=deps.public_url.startswith("https://"),
    )


def clear_session_cookie(response: Response, deps: SessionDeps) -> None:
    response.delete_cookie(
        cookie_name(deps), path="/", httponly=True, samesite="lax", secure=deps.public_url.startswith("https://"),
    )


async def authenticate(request: Request) -> Principal:
    """The signed-in user: a Bearer access token, else the browser session cookie (whose
    state-changing requests must pass the Origin check)."""
    d = session_deps(request)
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise sessions.unauthorized("Send the access token as 'Authorization: Bearer <token>'.")
        return await sessions.authenticate_bearer(d, token.strip())
    cookie = request.cookies.get(cookie_name(d))
    if not cookie:
        raise sessions.unauthorized()
    if request.method not in SAFE_METHODS:
        check_origin(request)
    return await sessions.authenticate_cookie(d, cookie)


def token_response(request: Request, sign_in: SignIn) -> JSONResponse:
    d = session_deps(request)
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
