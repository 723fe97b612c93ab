"""Tokens and sessions (API.md, "Tokens and sessions"), and the JWKS."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from passwordless.keys import service as keys
from passwordless.sessions import service
from passwordless.sessions.http import TOKEN_RESPONSE, authenticate, clear_session_cookie, session_deps, token_response
from passwordless.web.client import client_of
from passwordless.web.openapi import BEARER, COOKIE, NONE, Op, array, integer, nullable, obj, string
from passwordless.web.request import Fields, read_json


async def refresh(request: Request) -> Response:
    fields = Fields(await read_json(request))
    token = fields.text("refresh_token", 256)
    fields.done()
    return token_response(request, await service.refresh(session_deps(request), token, client_of(request)))


async def logout(request: Request) -> Response:
    d = session_deps(request)
    token = None
    if await request.body():
        fields = Fields(await read_json(request))
        token = fields.optional_text("refresh_token", 256)
        fields.done()
    if token is not None:
        await service.logout_by_refresh_token(d, token, client_of(request))
    else:
        principal = await authenticate(request)
        await service.logout(d, principal, client_of(request))
    response = Response(status_code=204)
    clear_session_cookie(response, d)
    return response


async def me(request: Request) -> Response:
    info = await service.me(session_deps(request), await authenticate(request))
    body = {"id": info.user.id, "email": info.user.email, "created_at": info.user.created_at, "passkeys": info.passkeys}
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def list_sessions(request: Request) -> Response:
    principal = await authenticate(request)
    sessions = await service.list_sessions(session_deps(request), principal)
    body = {
        "sessions": [
            {
                "id": s.id,
                "created_at": s.created_at,
                "last_used_at": s.last_used_at,
                "ip": s.ip,
                "user_agent": s.user_agent,
                "current": s.id == principal.session_id,
            }
            for s in sessions
        ]
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def end_session(request: Request) -> Response:
    principal = await authenticate(request)
    await service.end_session(session_deps(request), principal, request.path_params["id"], client_of(request))
    return Response(status_code=204)


async def jwks(request: Request) -> Response:
    return JSONResponse(session_deps(request).signer.jwks(), headers={"cache-control": f"public, max-age={keys.JWKS_CACHE_SECONDS}"})


routes = [
    Route("/auth/me", me, methods=["GET"]),
    Route("/auth/refresh", refresh, methods=["POST"]),
    Route("/auth/logout", logout, methods=["POST"]),
    Route("/auth/sessions", list_sessions, methods=["GET"]),
    Route("/auth/sessions/{id}", end_session, methods=["DELETE"]),
    Route("/.well-known/jwks.json", jwks, methods=["GET"]),
]

_SECURED = (BEARER, COOKIE)
_SESSION = obj({
    "id": string(), "created_at": integer(), "last_used_at": nullable(integer()), "ip": nullable(string()),
    "user_agent": nullable(string()), "current": {"type": "boolean"},
})
_REFRESH = obj({"refresh_token": string()})
operations = {
    ("GET", "/auth/me"): Op(
        "The signed-in user.", {200: obj({"id": string(), "email": string(), "created_at": integer(), "passkeys": integer()})},
        security=_SECURED, tag="sessions",
    ),
    ("POST", "/auth/refresh"): Op(
        "A new token response for a refresh token (single use).", {200: TOKEN_RESPONSE}, body=_REFRESH,
        errors=(401,), tag="sessions",
    ),
    ("POST", "/auth/logout"): Op(
        "End the session: by the refresh token in the body, else by the Bearer token or cookie.", {204: None},
        body=obj({"refresh_token": string()}, required=()), body_optional=True, security=(*_SECURED, NONE),
        errors=(401,), tag="sessions",
    ),
    ("GET", "/auth/sessions"): Op(
        "The user's active sessions.", {200: obj({"sessions": array(_SESSION)})}, security=_SECURED, tag="sessions",
    ),
    ("DELETE", "/auth/sessions/{id}"): Op("End one of the user's sessions.", {204: None}, security=_SECURED, tag="sessions"),
    ("GET", "/.well-known/jwks.json"): Op(
        "The public keys that verify access tokens (empty with HS256).",
        {200: obj({"keys": array({"type": "object"})})}, tag="sessions",
    ),
}
