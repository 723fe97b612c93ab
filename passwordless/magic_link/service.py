"""Sign in by email: request a link + code, then spend either one, once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from passwordless.clients.catalogue import Catalogue
from passwordless.config.settings import AuthSettings, RateLimitSettings
from passwordless.magic_link import store
from passwordless.magic_link.rules import check_redirect
from passwordless.mail import queue
from passwordless.mail.render import Rendered, Templates
from passwordless.platform import audit
from passwordless.platform.client import Client
from passwordless.platform.clock import Clock
from passwordless.platform.crypto import code_hash, new_code, new_id, new_token, same, token_hash
from passwordless.platform.db import Database, concurrent
from passwordless.platform.db.types import Connection
from passwordless.platform.errors import ApiError
from passwordless.platform.metrics import Metrics
from passwordless.sessions import service as sessions
from passwordless.sessions.limits import Limits, check_ip_limit, first_refusal, rate_limited
from passwordless.sessions.service import SignIn
from passwordless.users import store as users
from passwordless.users.rules import browser_name, normalise_email
from passwordless.webhooks import events


@dataclass(frozen=True)
class _Limited:
    retry_after: float



@dataclass(frozen=True)
class MagicLinkDeps:
    """What email sign-in needs, built in app.py."""

    db: Database
    clock: Clock
    auth: AuthSettings
    rate_limit: RateLimitSettings
    site_name: str  # webauthn.rp_name, named in the email
    public_url: str  # links are built from configuration only
    code_key: str  # the secret whose subkey keys the codes' HMACs
    templates: Templates
    wake_mail: Callable[[], None]  # tells the mail worker a new email is queued
    outbox: events.Outbox
    metrics: Metrics
    limits: Limits
    sessions: sessions.SessionDeps
    clients: Catalogue  # the OIDC clients, whose redirect URIs a sign-in form may end up at


async def form_targets(deps: MagicLinkDeps) -> tuple[str, ...]:
    """Where the browser may end up after a sign-in form's 303 (the pages' CSP form-action, which
    Chromium applies to every redirect the form follows): auth.allowed_redirects, and the OIDC
    clients' redirect URIs (the admin API's read now), reached through our own authorization
    endpoint."""
    return (*deps.auth.allowed_redirects, *await deps.db.read(deps.clients.redirect_uris))


async def request_link(deps: MagicLinkDeps, raw_email: str, redirect_to: str | None, client: Client) -> None:
    """Store a ticket and queue its email in one transaction. Known and unknown addresses take
    the same path (no account enumeration); without sign-up, unknown ones get no email."""
    email = normalise_email(raw_email)
    check_redirect(redirect_to, deps.auth.allowed_redirects)
    await check_ip_limit(deps.limits, "magic_link", client)
    now = deps.clock()
    token, code, ticket_id = new_token(), new_code(), new_id()
    ticket = store.NewTicket(
        ticket_id, email, token_hash(token), code_hash(deps.code_key, ticket_id, code), redirect_to,
        client.ip, client.user_agent, int(now), int(now + deps.auth.magic_link_ttl),
    )
    message = _render(deps, email, token, code, client, now)

    def save(conn: Connection) -> _Limited | None:
        limited = _email_limit(deps, conn, email, now)
        if limited:
            window = deps.rate_limit.magic_link_per_email.per_seconds
            if first_refusal(deps.limits, "magic_link_per_email", email, window, now):
                _audit(conn, "rate_limited", False, client, now, None, email, {"scope": "magic_link_per_email"})
            return limited
        store.insert(conn, ticket)
        known = users.by_email(conn, email) is not None
        if known or deps.auth.allow_signup:
            queue.enqueue(conn, email, message.subject, message.text, message.html, now)
        _audit(conn, "magic_link_requested", True, client, now, None, email, {"ticket_id": ticket_id})
        return None

    limited = await deps.db.write(save)
    if limited:
        deps.metrics.rate_limit_hits.labels("magic_link_per_email").inc()
        raise rate_limited(limited.retry_after)
    deps.wake_mail()


def _email_limit(deps: MagicLinkDeps, conn: Connection, email: str, now: float) -> _Limited | None:
    limits = deps.rate_limit
    if not limits.enabled:
        return None
    rate = limits.magic_link_per_email
    recent = store.requested_since(conn, email, now - rate.per_seconds)
    if len(recent) < rate.count:
        return None
    return _Limited(recent[len(recent) - rate.count] + rate.per_seconds - now)


def _render(deps: MagicLinkDeps, email: str, token: str, code: str, client: Client, now: float) -> Rendered:
    ttl = deps.auth.magic_link_ttl
    expires = _minute_text(int((now + ttl) // 60))
    return deps.templates.render(
        "magic_link",
        {
            "site": deps.site_name,
            "link": f"{deps.public_url}/auth/magic-link/verify?token={token}",
            "code": code,
            "expires_at": expires,
            "expires_minutes": str(round(ttl / 60)),
            "ip": client.ip or "an unknown address",
            "browser": browser_name(client.user_agent),
            "email": email,
        },
    )


@functools.lru_cache(maxsize=4)
def _minute_text(minute: int) -> str:
    """"14:32 UTC on 22 Nov 2026": the same for every email asked for in one minute."""
    return datetime.fromtimestamp(minute * 60, tz=timezone.utc).strftime("%H:%M UTC on %d %b %Y")


async def link_is_live(deps: MagicLinkDeps, token: str) -> bool:
    """Whether a link would still work, without spending it (for the confirmation page)."""
    return await deps.db.read(store.is_live, token_hash(token), deps.clock())


async def verify_link(deps: MagicLinkDeps, token: str, client: Client) -> SignIn:
    await check_ip_limit(deps.limits, "verify", client)
    now = deps.clock()

    @concurrent  # one statement spends the ticket: of two at once, exactly one gets it (see _sign_in)
    def spend(conn: Connection) -> SignIn | None:
        ticket = store.spend_by_token(conn, token_hash(token), now)
        sign_in = _sign_in(conn, deps, ticket, ("email",), client, now) if ticket else None
        if sign_in:
            _audit(conn, "magic_link_verified", True, client, now, sign_in.user.id, sign_in.user.email, {})
        else:
            _audit(conn, "magic_link_failed", False, client, now, None, ticket.email if ticket else None, {})
        return sign_in

    sign_in = await deps.db.write(spend)
    deps.metrics.attempt("magic_link", sign_in is not None)
    if sign_in is None:
        raise ApiError(401, "invalid_token", "The sign-in link has expired or was already used.")
    return sign_in


async def verify_code(deps: MagicLinkDeps, raw_email: str, code: str, client: Client) -> SignIn:
    email = normalise_email(raw_email)
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        raise ApiError(400, "invalid_request", "The code is the 6 digits from the email.")
    await check_ip_limit(deps.limits, "verify", client)
    now = deps.clock()

    @concurrent  # one statement spends the ticket, one counts a wrong code (see _sign_in)
    def spend(conn: Connection) -> SignIn | None:
        live = store.live_codes(conn, email, now)
        match = next((tid for tid, h in live if same(code_hash(deps.code_key, tid, code), h)), None)
        ticket = store.spend_by_id(conn, match, now) if match else None
        sign_in = _sign_in(conn, deps, ticket, ("otp",), client, now) if ticket else None
        if sign_in:
            _audit(conn, "code_verified", True, client, now, sign_in.user.id, email, {})
        else:
            store.count_wrong_code(conn, [tid for tid, _ in live], deps.auth.code_max_attempts, now)
            _audit(conn, "code_failed", False, client, now, None, email, {})
        return sign_in

    sign_in = await deps.db.write(spend)
    deps.metrics.attempt("code", sign_in is not None)
    if sign_in is None:
        raise ApiError(401, "invalid_code", "The code is wrong or has expired.")
    return sign_in


def _sign_in(
    conn: Connection, deps: MagicLinkDeps, ticket: store.SpentTicket, amr: tuple[str, ...], client: Client,
    now: float,
) -> SignIn | None:
    """The user of a spent ticket (created at first sign-in, if sign-up is allowed) and a session.
    Its units run at READ COMMITTED on PostgreSQL (`@concurrent`): every step that two sign-ins
    at once could both pass is one statement (spending, counting, making the user), so they
    need not abort and run again under SERIALIZABLE, which they did under load."""
    user = users.by_email(conn, ticket.email)
    if user is None:
        if not deps.auth.allow_signup:
            return None
        user, made = users.create_unless_exists(conn, ticket.email, now)
        if made:
            _audit(conn, "user_created", True, client, now, user.id, user.email, {})
            events.emit(conn, deps.outbox, "user.created", user, now)
    proof = sessions.Proof(amr[0], amr, ticket.redirect_to)
    return sessions.complete_sign_in(conn, deps.sessions.jwt.refresh_ttl, deps.outbox, user, proof, client, now)


def _audit(
    conn: Connection, event: str, success: bool, client: Client, now: float,
    user_id: str | None, email: str | None, details: dict[str, object],
) -> None:
    audit.record(conn, audit.AuditEvent(event, success, user_id, email, client.ip, client.user_agent, details), now)
