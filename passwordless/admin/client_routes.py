"""Admin API: the OpenID Connect clients (OIDC.md, "Clients and users"), behind the admin token
like the rest of /admin. A secret is in an answer once, when it is made, and nowhere else."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from passwordless.admin.routes import admin
from passwordless.clients import service
from passwordless.clients.catalogue import Entry
from passwordless.clients.rules import MAX_ITEMS, MAX_TEXT
from passwordless.config.settings import OIDC_ALGORITHMS, OIDC_SCOPES
from passwordless.web.client import client_of
from passwordless.web.openapi import ADMIN, Op, Schema, array, integer, nullable, obj, string
from passwordless.web.parts import part
from passwordless.web.request import read_json

NO_STORE = {"cache-control": "no-store"}


def _deps(request: Request) -> service.ClientDeps:
    return part(request, "clients", service.ClientDeps)


def client_json(entry: Entry) -> dict[str, Any]:
    s = entry.settings
    return {
        "id": s.id, "name": s.name or s.id, "source": entry.source,
        "redirect_uris": list(s.redirect_uris), "post_logout_redirect_uris": list(s.post_logout_redirect_uris),
        "backchannel_logout_uri": s.backchannel_logout_uri, "public": s.public,  # "" for none, as in the TOML
        "require_pkce": s.require_pkce, "skip_consent": s.skip_consent, "scopes": list(s.scopes),
        "allowed_emails": list(s.allowed_emails), "allowed_groups": list(s.allowed_groups),
        "id_token_signed_response_alg": s.id_token_signed_response_alg,
        "created_at": entry.created_at, "updated_at": entry.updated_at,
    }


@admin
async def list_clients(request: Request) -> Response:
    entries = await service.list_clients(_deps(request))
    return JSONResponse({"clients": [client_json(e) for e in entries]}, headers=NO_STORE)


@admin
async def create_client(request: Request) -> Response:
    created = await service.create(_deps(request), await read_json(request), client_of(request))
    return JSONResponse({**client_json(created.entry), "secret": created.secret}, status_code=201, headers=NO_STORE)


@admin
async def get_client(request: Request) -> Response:
    entry = await service.get_client(_deps(request), request.path_params["id"])
    return JSONResponse(client_json(entry), headers=NO_STORE)


@admin
async def change_client(request: Request) -> Response:
    data = await read_json(request)
    entry = await service.update(_deps(request), request.path_params["id"], data, client_of(request))
    return JSONResponse(client_json(entry), headers=NO_STORE)


@admin
async def delete_client(request: Request) -> Response:
    await service.delete(_deps(request), request.path_params["id"], client_of(request))
    return Response(status_code=204)


@admin
async def new_secret(request: Request) -> Response:
    secret = await service.new_secret(_deps(request), request.path_params["id"], client_of(request))
    return JSONResponse({"id": request.path_params["id"], "secret": secret}, headers=NO_STORE)


routes = [
    Route("/admin/oidc/clients", list_clients, methods=["GET"]),
    Route("/admin/oidc/clients", create_client, methods=["POST"]),
    Route("/admin/oidc/clients/{id}", get_client, methods=["GET"]),
    Route("/admin/oidc/clients/{id}", change_client, methods=["PATCH"]),
    Route("/admin/oidc/clients/{id}", delete_client, methods=["DELETE"]),
    Route("/admin/oidc/clients/{id}/secret", new_secret, methods=["POST"]),
]

_TEXT = string(maxLength=MAX_TEXT)
_LIST = array(_TEXT) | {"maxItems": MAX_ITEMS}
_WRITABLE: dict[str, Schema] = {
    "id": string(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"), "name": _TEXT,
    "redirect_uris": _LIST, "post_logout_redirect_uris": _LIST, "backchannel_logout_uri": _TEXT,
    "public": {"type": "boolean"}, "require_pkce": {"type": "boolean"}, "skip_consent": {"type": "boolean"},
    "scopes": array(string(enum=list(OIDC_SCOPES))), "allowed_emails": _LIST, "allowed_groups": _LIST,
    "id_token_signed_response_alg": string(enum=list(OIDC_ALGORITHMS)),
}
_CLIENT = {
    **_WRITABLE, "source": string(enum=["config", "api"]),
    "created_at": nullable(integer()), "updated_at": nullable(integer()),
}


def _op(summary: str, answers: dict[int, Schema | None], errors: tuple[int, ...] = (), **more: Any) -> Op:
    return Op(summary, answers, security=(ADMIN,), errors=(404, *errors), tag="admin", **more)


operations = {
    ("GET", "/admin/oidc/clients"): _op(
        "Every OpenID Connect client: the config file's (`source: config`) and the admin API's (`source: api`).",
        {200: obj({"clients": array(obj(_CLIENT))})},
    ),
    ("POST", "/admin/oidc/clients"): _op(
        "Add a client (a `[[oidc.clients]]` table as JSON, without a secret). The answer carries its generated"
        " secret, shown this once (null for a public client). 409: the id is taken (here or in the config file).",
        {201: obj({**_CLIENT, "secret": nullable(string())})}, errors=(409,),
        body=obj(_WRITABLE, required=["id", "redirect_uris"]),
    ),
    ("GET", "/admin/oidc/clients/{id}"): _op("One client (never its secret).", {200: obj(_CLIENT)}),
    ("PATCH", "/admin/oidc/clients/{id}"): _op(
        "Change an admin API client: the fields given replace its own (not `id` or `public`). 409: a config client.",
        {200: obj(_CLIENT)}, errors=(409,), body=obj(_WRITABLE, required=[]),
    ),
    ("DELETE", "/admin/oidc/clients/{id}"): _op(
        "Delete an admin API client; its grants end (refresh and access tokens stop working). 409: a config client.",
        {204: None}, errors=(409,),
    ),
    ("POST", "/admin/oidc/clients/{id}/secret"): _op(
        "A new secret, shown this once; the old one stops working at once. 409: a config or public client.",
        {200: obj({"id": string(), "secret": string()})}, errors=(409,),
    ),
}
