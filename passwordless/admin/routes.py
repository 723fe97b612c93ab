"""Admin API (API.md, "Admin API"), behind `Authorization: Bearer {admin.token}`; off (404)
when no token is configured. Every call is audited."""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from passwordless.admin import service
from passwordless.passkeys.answers import PASSKEY, passkey_json
from passwordless.platform.errors import ApiError, invalid_request
from passwordless.web.client import client_of
from passwordless.web.openapi import ADMIN, Op, Schema, array, integer, nullable, obj, string
from passwordless.web.parts import part
from passwordless.web.request import read_json

Handler = Callable[[Request], Awaitable[Response]]
MAX_LIMIT = 200
EMAIL_STATUSES = ("pending", "sending", "sent", "dead")


def _deps(request: Request) -> service.AdminDeps:
    return part(request, "admin", service.AdminDeps)


def admin(handler: Handler) -> Handler:
    """Refuses a missing or wrong admin token (compared in constant time); audits every call."""

    async def guarded(request: Request) -> Response:
        d = _deps(request)
        token = d.token
        if not token:
            raise ApiError(404, "not_found", "No such route.")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        allowed = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
        route = getattr(request.scope.get("route"), "path", request.url.path)
        await service.record_call(d, client_of(request), request.method, route, allowed)
        if not allowed:
            raise ApiError(401, "unauthorized", "This needs the admin token.", {"www-authenticate": "Bearer"})
        return await handler(request)

    return guarded


def _limit(request: Request) -> int:
    text = request.query_params.get("limit", "50")
    if not _digits(text, 3) or not 1 <= int(text) <= MAX_LIMIT:
        raise invalid_request(f"limit is a whole number from 1 to {MAX_LIMIT}.")
    return int(text)


def _digits(text: str, most: int) -> bool:
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def _page(key: str, items: list[dict[str, Any]], limit: int) -> JSONResponse:
    next_cursor = items[-1]["id"] if len(items) == limit else None
    return JSONResponse({key: items, "next": next_cursor}, headers={"cache-control": "no-store"})


@admin
async def stats(request: Request) -> Response:
    s = await service.stats(_deps(request))
    return JSONResponse({
        "users": s.users, "active_sessions": s.active_sessions, "passkeys": s.passkeys,
        "email_queue": s.email_queue, "uptime_seconds": s.uptime_seconds,
    })


@admin
async def list_users(request: Request) -> Response:
    limit = _limit(request)
    q = request.query_params
    found = await service.list_users(_deps(request), q.get("email") or None, q.get("after") or None, limit)
    items = [
        {"id": u.id, "email": u.email, "created_at": u.created_at, "last_sign_in_at": u.last_sign_in_at}
        for u in found
    ]
    return _page("users", items, limit)


@admin
async def get_user(request: Request) -> Response:
    detail = await service.user_detail(_deps(request), request.path_params["id"])
    u = detail.user
    return JSONResponse({
        "id": u.id, "email": u.email, "created_at": u.created_at, "last_sign_in_at": u.last_sign_in_at,
        "passkeys": [passkey_json(p) for p in detail.passkeys], "active_sessions": detail.active_sessions,
        "groups": detail.groups,
    })


MAX_GROUPS = 100
GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}")


@admin
async def set_groups(request: Request) -> Response:
    data = await read_json(request)
    groups = data.get("groups")
    if set(data) != {"groups"} or not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise invalid_request(f'The body is {{"groups": [...]}}, at most {MAX_GROUPS} names.')
    if not all(isinstance(g, str) and GROUP.fullmatch(g) for g in groups):
        raise invalid_request("A group name is 1 to 64 letters, digits and . _ : @ / - (starting with a letter or digit).")
    found = await service.set_groups(_deps(request), request.path_params["id"], list(groups), client_of(request))
    return JSONResponse({"groups": found})


@admin
async def revoke_sessions(request: Request) -> Response:
    revoked = await service.revoke_sessions(_deps(request), request.path_params["id"], client_of(request))
    return JSONResponse({"revoked": revoked})


@admin
async def delete_user(request: Request) -> Response:
    await service.delete_user(_deps(request), request.path_params["id"], client_of(request))
    return Response(status_code=204)


@admin
async def audit_logs(request: Request) -> Response:
    limit = _limit(request)
    q = request.query_params
    success = {"true": True, "1": True, "false": False, "0": False}.get(q.get("success", "").lower())
    if q.get("success") and success is None:
        raise invalid_request("success is true or false.")
    since = q.get("since")
    if since is not None and not _digits(since, 12):
        raise invalid_request("since is a time in UNIX seconds.")
    f = service.AuditFilter(q.get("event_type") or None, q.get("user_id") or None, success, int(since) if since else None)
    rows = await service.audit_page(_deps(request), f, q.get("after") or None, limit)
    items = [
        {"id": r.id, "created_at": r.created_at, "event_type": r.event_type, "user_id": r.user_id, "email": r.email,
         "ip": r.ip, "user_agent": r.user_agent, "success": r.success, "details": r.details}
        for r in rows
    ]
    return _page("events", items, limit)


@admin
async def emails(request: Request) -> Response:
    limit = _limit(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in EMAIL_STATUSES:
        raise invalid_request("status is one of " + ", ".join(EMAIL_STATUSES) + ".")
    rows = await service.emails_page(_deps(request), status, request.query_params.get("after") or None, limit)
    items = [
        {"id": e.id, "to": e.to, "subject": e.subject, "status": e.status, "attempts": e.attempts,
         "last_error": e.last_error, "created_at": e.created_at, "next_attempt_at": int(e.next_attempt_at),
         "sent_at": e.sent_at}
        for e in rows
    ]
    return _page("emails", items, limit)


@admin
async def retry_email(request: Request) -> Response:
    await service.retry_email(_deps(request), request.path_params["id"])
    return JSONResponse({"status": "pending"}, status_code=202)


routes = [
    Route("/admin/stats", stats, methods=["GET"]),
    Route("/admin/users", list_users, methods=["GET"]),
    Route("/admin/users/{id}", get_user, methods=["GET"]),
    Route("/admin/users/{id}/sessions", revoke_sessions, methods=["DELETE"]),
    Route("/admin/users/{id}/groups", set_groups, methods=["PUT"]),
    Route("/admin/users/{id}", delete_user, methods=["DELETE"]),
    Route("/admin/audit-logs", audit_logs, methods=["GET"]),
    Route("/admin/emails", emails, methods=["GET"]),
    Route("/admin/emails/{id}/retry", retry_email, methods=["POST"]),
]

_LIST = {"limit": integer(minimum=1, maximum=MAX_LIMIT), "after": string()}
_USER = {"id": string(), "email": string(), "created_at": integer(), "last_sign_in_at": nullable(integer())}
_EVENT = obj({
    "id": string(), "created_at": integer(), "event_type": string(), "user_id": nullable(string()),
    "email": nullable(string()), "ip": nullable(string()), "user_agent": nullable(string()),
    "success": {"type": "boolean"}, "details": {},
})
_EMAIL = obj({
    "id": string(), "to": string(), "subject": string(), "status": string(enum=list(EMAIL_STATUSES)),
    "attempts": integer(), "last_error": nullable(string()), "created_at": integer(), "next_attempt_at": integer(),
    "sent_at": nullable(integer()),
})


def _admin(summary: str, answers: dict[int, Schema | None], errors: tuple[int, ...] = (), **more: Any) -> Op:
    return Op(summary, answers, security=(ADMIN,), errors=(404, *errors), tag="admin", **more)


def _paged(key: str, item: Schema) -> Schema:
    return obj({key: array(item), "next": nullable(string())})


operations = {
    ("GET", "/admin/stats"): _admin("Counts.", {200: obj({
        "users": integer(), "active_sessions": integer(), "passkeys": integer(),
        "email_queue": obj({s: integer() for s in EMAIL_STATUSES}), "uptime_seconds": integer(),
    })}),
    ("GET", "/admin/users"): _admin(
        "Users, oldest first; `email` filters.", {200: _paged("users", obj(_USER))}, query={"email": string(), **_LIST},
    ),
    ("GET", "/admin/users/{id}"): _admin("One user with their passkeys and groups.", {200: obj({
        **_USER, "passkeys": array(PASSKEY), "active_sessions": integer(), "groups": array(string()),
    })}),
    ("PUT", "/admin/users/{id}/groups"): _admin(
        "Replace a user's groups (OIDC: allowed_groups and the groups claim).", {200: obj({"groups": array(string())})},
        errors=(400, 415), body=obj({"groups": array(string())}),
    ),
    ("DELETE", "/admin/users/{id}/sessions"): _admin("End all of a user's sessions.", {200: obj({"revoked": integer()})}),
    ("DELETE", "/admin/users/{id}"): _admin("Delete a user (audit rows stay).", {204: None}),
    ("GET", "/admin/audit-logs"): _admin("The audit log.", {200: _paged("events", _EVENT)}, query={
        "event_type": string(), "user_id": string(), "success": string(enum=["true", "false", "1", "0"]),
        "since": integer(minimum=0), **_LIST,
    }),
    ("GET", "/admin/emails"): _admin(
        "The email queue (never a body, token or code).", {200: _paged("emails", _EMAIL)},
        query={"status": string(enum=list(EMAIL_STATUSES)), **_LIST},
    ),
    ("POST", "/admin/emails/{id}/retry"): _admin(
        "Send a dead email again (400 for one that is not dead).", {202: obj({"status": string(enum=["pending"])})},
        errors=(400,),
    ),
}
