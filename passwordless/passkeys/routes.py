"""Passkeys (API.md, "Passkeys (WebAuthn)")."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from passwordless.config.kinds import origin_of
from passwordless.passkeys import registration, service, signin
from passwordless.passkeys.answers import PASSKEY, passkey_json
from passwordless.passkeys.service import PasskeyDeps
from passwordless.platform.errors import invalid_request
from passwordless.sessions.http import TOKEN_RESPONSE, authenticate, set_session_cookie, token_response
from passwordless.web.client import client_of
from passwordless.web.openapi import BEARER, COOKIE, Op, array, obj, string
from passwordless.web.parts import part
from passwordless.web.request import Fields, read_json

_NO_STORE = {"cache-control": "no-store"}


def _deps(request: Request) -> PasskeyDeps:
    return part(request, "passkeys", PasskeyDeps)


def _credential(fields: Fields) -> dict[str, Any]:
    credential = fields.optional_object("credential")
    if credential is None:
        raise invalid_request("The field 'credential' is required.")
    return credential


async def register_options(request: Request) -> Response:
    principal = await authenticate(request)
    if await request.body():
        Fields(await read_json(request)).done()
    options = await registration.registration_options(_deps(request), principal)
    return JSONResponse({"options": options}, headers=_NO_STORE)


async def register_verify(request: Request) -> Response:
    principal = await authenticate(request)
    fields = Fields(await read_json(request))
    credential = _credential(fields)
    name = fields.optional_text("name", service.MAX_NAME)
    fields.done()
    passkey = await registration.register(_deps(request), principal, credential, name, client_of(request))
    return JSONResponse(passkey_json(passkey), status_code=201)


async def login_options(request: Request) -> Response:
    email = None
    if await request.body():
        fields = Fields(await read_json(request))
        email = fields.optional_text("email", 1024)
        fields.done()
    options = await signin.login_options(_deps(request), email, client_of(request))
    return JSONResponse({"options": options}, headers=_NO_STORE)


async def login_verify(request: Request) -> Response:
    fields = Fields(await read_json(request))
    credential = _credential(fields)
    fields.done()
    d = _deps(request)
    sign_in = await signin.login(d, credential, client_of(request))
    response = token_response(request, sign_in)
    if request.headers.get("origin") == origin_of(d.public_url):
        # Our own hosted page signs the browser in, as the emailed link's form does.
        set_session_cookie(response, d.sessions, sign_in)
    return response


async def list_passkeys(request: Request) -> Response:
    passkeys = await service.list_passkeys(_deps(request), await authenticate(request))
    return JSONResponse({"passkeys": [passkey_json(p) for p in passkeys]}, headers=_NO_STORE)


async def rename(request: Request) -> Response:
    principal = await authenticate(request)
    fields = Fields(await read_json(request))
    name = fields.text("name", 256)
    fields.done()
    passkey = await service.rename(_deps(request), principal, request.path_params["id"], name)
    return JSONResponse(passkey_json(passkey))


async def delete(request: Request) -> Response:
    principal = await authenticate(request)
    await service.delete(_deps(request), principal, request.path_params["id"], client_of(request))
    return Response(status_code=204)


routes = [
    Route("/auth/passkeys/register/options", register_options, methods=["POST"]),
    Route("/auth/passkeys/register/verify", register_verify, methods=["POST"]),
    Route("/auth/passkeys/login/options", login_options, methods=["POST"]),
    Route("/auth/passkeys/login/verify", login_verify, methods=["POST"]),
    Route("/auth/passkeys", list_passkeys, methods=["GET"]),
    Route("/auth/passkeys/{id}", rename, methods=["PATCH"]),
    Route("/auth/passkeys/{id}", delete, methods=["DELETE"]),
]

_SECURED = (BEARER, COOKIE)
_OPTIONS = obj({"options": {"type": "object"}})
_CREDENTIAL = {"type": "object", "description": "What credential.toJSON() returns."}
operations = {
    ("POST", "/auth/passkeys/register/options"): Op(
        "WebAuthn creation options for a new passkey.", {200: _OPTIONS}, body=obj({}), body_optional=True,
        security=_SECURED, errors=(403, 409), tag="passkeys",
    ),
    ("POST", "/auth/passkeys/register/verify"): Op(
        "Store the new passkey.", {201: PASSKEY},
        body=obj({"credential": _CREDENTIAL, "name": string(maxLength=service.MAX_NAME)}, required=["credential"]),
        security=_SECURED, errors=(403, 409), tag="passkeys",
    ),
    ("POST", "/auth/passkeys/login/options"): Op(
        "WebAuthn request options; with an email, that user's credentials.", {200: _OPTIONS},
        body=obj({"email": string(maxLength=1024)}, required=()), body_optional=True, errors=(429,), tag="passkeys",
    ),
    ("POST", "/auth/passkeys/login/verify"): Op(
        "Sign in with a passkey.", {200: TOKEN_RESPONSE}, body=obj({"credential": _CREDENTIAL}),
        errors=(401, 429), tag="passkeys",
    ),
    ("GET", "/auth/passkeys"): Op(
        "The user's passkeys.", {200: obj({"passkeys": array(PASSKEY)})}, security=_SECURED, tag="passkeys",
    ),
    ("PATCH", "/auth/passkeys/{id}"): Op(
        "Rename a passkey.", {200: PASSKEY}, body=obj({"name": string(maxLength=256)}), security=_SECURED,
        tag="passkeys",
    ),
    ("DELETE", "/auth/passkeys/{id}"): Op("Remove a passkey.", {204: None}, security=_SECURED, tag="passkeys"),
}
