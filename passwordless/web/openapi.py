"""GET /openapi.json: an OpenAPI 3.1 document assembled from the route table. Each feature declares
its operations beside its routes (`operations = {("GET", "/path"): Op(...)}`); this module knows
no feature, only how a declaration becomes a path item with the error answers it implies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

Schema = dict[str, Any]
Key = tuple[str, str]  # (method, path template)

BEARER = "bearer"  # an access token from a sign-in
COOKIE = "cookie"  # the hosted pages' session cookie
ADMIN = "admin"  # admin.token
METRICS = "metrics"  # metrics.token
CLIENT = "client"  # an OAuth client's id and secret, HTTP Basic
NONE = ""  # beside others: the operation may also be called without credentials

ERROR_CODES = {
    400: "A malformed body, a missing or wrong-typed field, or a bad value (`invalid_request`, ...).",
    401: "A missing, invalid, expired or revoked token or credential.",
    403: "Authenticated but not allowed (a cookie request that failed the Origin check, ...).",
    404: "No such object (or route).",
    409: "The request conflicts with a limit or the current state.",
    413: "The body is larger than server.max_body_bytes (`payload_too_large`).",
    415: "A JSON endpoint called with another content type (`unsupported_media_type`).",
    429: "Rate limited (`rate_limited`); Retry-After says in how many seconds to come back.",
    503: "Not ready: draining for shutdown, the database unavailable or the connection limit reached.",
}


def string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def integer(**extra: Any) -> Schema:
    return {"type": "integer", **extra}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: Mapping[str, Schema], *, required: Iterable[str] | None = None, closed: bool = True) -> Schema:
    """An object schema; every property is required unless `required` names fewer."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    schema["required"] = list(properties if required is None else required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Answer:
    """An answer that is not the operation's usual one: a page, a redirect, or an error in the shape
    the operation's own standard sets (it then takes the place of API.md's for that status).
    `content` maps media types to schemas (empty: no body); `headers` names → descriptions."""

    description: str
    content: Mapping[str, Schema] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Op:
    """One operation: its successful answers (status → JSON schema, None for no body, or an
    Answer), its body, who may call it and which further errors it can answer besides those
    implied (a body implies 400/413, a JSON body 415, security 401, a path parameter 404; every
    operation may answer 503)."""

    summary: str
    answers: Mapping[int, Schema | None | Answer]
    body: Schema | None = None
    body_optional: bool = False
    body_media_type: str = JSON
    security: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()
    query: Mapping[str, Schema] = field(default_factory=dict)
    media_type: str = JSON
    tag: str = ""


def document(routes: Iterable[BaseRoute], operations: Mapping[Key, Op], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in route_keys(routes):
        op = operations.get((method, path))
        if op is not None:
            paths.setdefault(path, {})[method.lower()] = _operation(op, path)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "passwordless",
            "version": version,
            "description": "Passwordless sign-in: magic links, one-time codes and passkeys. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": integer(minimum=0)}},
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def route_keys(routes: Iterable[BaseRoute]) -> list[Key]:
    """(method, path) of every plain route; HEAD is implied by GET and not listed."""
    return [
        (method, route.path)
        for route in routes if isinstance(route, Route)
        for method in sorted(route.methods or ()) if method != "HEAD"
    ]


def serve(routes: Iterable[BaseRoute], operations: Mapping[Key, Op], version: str) -> Route:
    """The route that answers GET /openapi.json with the document, built once."""
    body: dict[str, Any] = {}

    async def openapi(request: Request) -> Response:
        return JSONResponse(body, headers={"cache-control": "public, max-age=300"})

    route = Route("/openapi.json", openapi, methods=["GET"])
    body.update(document([*routes, route], {**operations, ("GET", route.path): _SELF}, version))
    return route


_SELF = Op("This document (OpenAPI 3.1).", {200: {"type": "object"}}, tag="meta")

_ERROR = obj({"error": obj({"code": string(), "message": string()})})

_SECURITY_SCHEMES = {
    BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "An access token."},
    COOKIE: {
        "type": "apiKey", "in": "cookie", "name": "pl_session",
        "description": "The hosted pages' session cookie (`__Host-pl_session` over https); requests "
                       "that change state must pass the Origin check.",
    },
    ADMIN: {"type": "http", "scheme": "bearer", "description": "admin.token; the admin API is off (404) without one."},
    METRICS: {"type": "http", "scheme": "bearer", "description": "metrics.token, when one is set."},
    CLIENT: {
        "type": "http", "scheme": "basic",
        "description": "An OAuth client's id and secret (client_secret_basic). client_secret_post sends them as "
                       "the client_id and client_secret form fields instead; a public client sends only client_id.",
    },
}


def _operation(op: Op, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "responses": _responses(op, path)}
    if op.tag:
        out["tags"] = [op.tag]
    parameters = _parameters(op, path)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": not op.body_optional, "content": {op.body_media_type: {"schema": op.body}}}
    out["security"] = [{name: []} if name else {} for name in op.security]
    return out


def _parameters(op: Op, path: str) -> list[dict[str, Any]]:
    found = [
        {"name": part[1:-1], "in": "path", "required": True, "schema": string(minLength=1)}
        for part in path.split("/") if part.startswith("{")
    ]
    found += [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in op.query.items()]
    return found


def _responses(op: Op, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, schema in op.answers.items():
        out[str(status)] = _answer(schema if isinstance(schema, Answer) else Answer("Success.", _content(op, schema)))
    for status in sorted(_error_statuses(op, path)):
        error: dict[str, Any] = {
            "description": ERROR_CODES[status],
            "content": {"application/json": {"schema": ref("Error")}},
        }
        if status == 429:
            error["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
        out.setdefault(str(status), error)
    return out


def _content(op: Op, schema: Schema | None) -> dict[str, Schema]:
    return {} if schema is None else {op.media_type: schema}


def _answer(answer: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.content:
        out["content"] = {media_type: {"schema": schema} for media_type, schema in answer.content.items()}
    if answer.headers:
        out["headers"] = {name: {"description": text, "schema": string()} for name, text in answer.headers.items()}
    return out


def _error_statuses(op: Op, path: str) -> set[int]:
    statuses = {503, *op.errors}
    if op.body is not None or op.query:
        statuses.add(400)
    if op.body is not None:
        statuses |= {413, 415} if op.body_media_type == JSON else {413}
    if any(op.security):
        statuses.add(401)
    if COOKIE in op.security:
        statuses.add(403)
    if "{" in path:
        statuses.add(404)
    return statuses
