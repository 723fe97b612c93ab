"""The operator's view: counts, users, sessions, the audit log and the email queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from passwordless.mail import queue
from passwordless.passkeys import store as passkeys
from passwordless.passkeys.store import Passkey
from passwordless.platform import audit
from passwordless.platform.audit import AuditFilter as AuditFilter  # re-exported for the routes
from passwordless.platform.client import Client
from passwordless.platform.clock import Clock
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.errors import ApiError, invalid_request
from passwordless.platform.lifecycle import Lifecycle
from passwordless.platform.ratelimit import client_key
from passwordless.sessions import store as sessions
from passwordless.sessions.limits import Limits, first_refusal
from passwordless.sessions.service import SessionsEnded, nobody_to_tell
from passwordless.users import store as users
from passwordless.webhooks import events


@dataclass(frozen=True)
class AdminDeps:
    """What the admin API needs, built in app.py."""

    db: Database
    clock: Clock
    lifecycle: Lifecycle
    outbox: events.Outbox
    wake_mail: Callable[[], None]
    limits: Limits  # the admin token's refusals are audited once per IP per minute
    token: str | None  # admin.token; none turns the admin API off
    sessions_ended: SessionsEnded = nobody_to_tell  # the OIDC provider's back-channel logout


@dataclass(frozen=True)
class Stats:
    users: int
    active_sessions: int
    passkeys: int
    email_queue: dict[str, int]
    uptime_seconds: int


@dataclass(frozen=True)
class UserDetail:
    user: users.UserRow
    passkeys: list[Passkey]
    active_sessions: int
    groups: list[str]


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"No such {what}.")


async def stats(deps: AdminDeps) -> Stats:
    now = deps.clock()

    def count(conn: Connection) -> Stats:
        depth = queue.depth(conn)
        statuses = {s: depth.get(s, 0) for s in ("pending", "sending", "sent", "dead")}
        return Stats(
            users.count(conn), sessions.count_active(conn, now), passkeys.count_all(conn), statuses,
            deps.lifecycle.uptime_seconds(),
        )

    return await deps.db.read(count)


async def list_users(deps: AdminDeps, email: str | None, after: str | None, limit: int) -> list[users.UserRow]:
    prefix = email.strip().lower() if email else None
    return await deps.db.read(users.page, prefix, after, limit)


async def user_detail(deps: AdminDeps, user_id: str) -> UserDetail:
    now = deps.clock()

    def read(conn: Connection) -> UserDetail | None:
        user = users.row_by_id(conn, user_id)
        if user is None:
            return None
        return UserDetail(
            user, passkeys.for_user(conn, user_id), sessions.count_active_for_user(conn, user_id, now),
            users.groups_of(conn, user_id),
        )

    found = await deps.db.read(read)
    if found is None:
        raise not_found("user")
    return found


async def revoke_sessions(deps: AdminDeps, user_id: str, client: Client) -> int:
    now = deps.clock()

    def revoke(conn: Connection) -> int | None:
        user = users.by_id(conn, user_id)
        if user is None:
            return None
        ended = sessions.revoke_all_for_user(conn, user_id, now, "admin")
        deps.sessions_ended(conn, ended, now)
        revoked = len(ended)
        event = audit.AuditEvent("sessions_revoked", True, user.id, user.email, client.ip, client.user_agent,
                                 {"revoked": revoked, "by": "admin"})
        audit.record(conn, event, now)
        if revoked:
            events.emit(conn, deps.outbox, "sessions.revoked", user, now, revoked=revoked)
        return revoked

    revoked = await deps.db.write(revoke)
    if revoked is None:
        raise not_found("user")
    return revoked


async def set_groups(deps: AdminDeps, user_id: str, groups: list[str], client: Client) -> list[str]:
    """Replace a user's groups (OIDC.md: allowed_groups and the `groups` claim); the new list."""
    now = deps.clock()

    def replace(conn: Connection) -> list[str] | None:
        user = users.by_id(conn, user_id)
        if user is None:
            return None
        before = users.groups_of(conn, user_id)
        users.set_groups(conn, user_id, groups)
        after = users.groups_of(conn, user_id)
        event = audit.AuditEvent("user_groups_changed", True, user.id, user.email, client.ip, client.user_agent,
                                 {"before": before, "after": after, "by": "admin"})
        audit.record(conn, event, now)
        return after

    found = await deps.db.write(replace)
    if found is None:
        raise not_found("user")
    return found


async def delete_user(deps: AdminDeps, user_id: str, client: Client) -> None:
    now = deps.clock()

    def delete(conn: Connection) -> bool:
        deps.sessions_ended(conn, [s.id for s in sessions.list_active(conn, user_id, now)], now)  # before the cascade
        user = users.delete(conn, user_id)
        if user is None:
            return False
        event = audit.AuditEvent("user_deleted", True, user.id, user.email, client.ip, client.user_agent, {"by": "admin"})
        audit.record(conn, event, now)
        events.emit(conn, deps.outbox, "user.deleted", user, now)
        return True

    if not await deps.db.write(delete):
        raise not_found("user")


async def audit_page(deps: AdminDeps, f: audit.AuditFilter, after: str | None, limit: int) -> list[audit.AuditRow]:
    return await deps.db.read(audit.page, f, after, limit)


async def emails_page(deps: AdminDeps, status: str | None, after: str | None, limit: int) -> list[queue.EmailRow]:
    return await deps.db.read(queue.page, status, after, limit)


async def retry_email(deps: AdminDeps, email_id: str) -> None:
    now = deps.clock()

    def retry(conn: Connection) -> str | None:
        status = queue.status_of(conn, email_id)
        if status == "dead" and queue.retry(conn, email_id, now):
            return "retried"
        return status

    outcome = await deps.db.write(retry)
    if outcome is None:
        raise not_found("email")
    if outcome != "retried":
        raise invalid_request(f"Only a dead email can be retried; this one is {outcome}.")
    deps.wake_mail()


ADMIN_REFUSALS_WINDOW = 60.0  # wrong admin tokens leave one admin_unauthorized row per IP per minute


async def record_call(deps: AdminDeps, client: Client, method: str, route: str, allowed: bool) -> None:
    if not allowed and not first_refusal(deps.limits, "admin_unauthorized", client_key(client.ip), ADMIN_REFUSALS_WINDOW,
                                         deps.clock()):
        return
    event = audit.AuditEvent(
        "admin_request" if allowed else "admin_unauthorized", allowed, ip=client.ip, user_agent=client.user_agent,
        details={"method": method, "route": route},
    )
    await deps.db.write(audit.record, event, deps.clock())
