"""Sessions and tokens: opening a session at sign-in, refresh with rotation and reuse
detection, authentication by access token or browser cookie, sign-out and session lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from passwordless.config.settings import AuthSettings, JwtSettings
from passwordless.keys.signer import DECODING_ERRORS, InvalidAccessToken, Signer
from passwordless.platform import audit
from passwordless.platform.client import Client
from passwordless.platform.clock import Clock
from passwordless.platform.crypto import new_id, new_token, token_hash
from passwordless.platform.db import Database, concurrent
from passwordless.platform.db.types import Connection
from passwordless.platform.errors import ApiError
from passwordless.platform.metrics import Metrics
from passwordless.sessions import store
from passwordless.users import store as users
from passwordless.users.store import User
from passwordless.webhooks import events

# Told, inside the unit that ended them, which sessions just ended (the OIDC provider revokes their
# grants and queues back-channel logout tokens); the composition root supplies it.
SessionsEnded = Callable[[Connection, Sequence[str], float], object]


def nobody_to_tell(conn: Connection, session_ids: Sequence[str], now: float) -> None:
    return None


@dataclass(frozen=True)
class SessionDeps:
    """What sessions need, built in app.py."""

    db: Database
    clock: Clock
    signer: Signer
    cookies: URLSafeTimedSerializer  # signs the browser session cookie
    jwt: JwtSettings
    auth: AuthSettings
    outbox: events.Outbox
    metrics: Metrics
    public_url: str  # https or not: the cookie's name and Secure flag
    # /auth/me shows how many passkeys a user has; sessions ask the composition root, not passkeys.
    count_passkeys: Callable[[Connection, str], int]
    sessions_ended: SessionsEnded = nobody_to_tell


@dataclass(frozen=True)
class SignIn:
    user: User
    session_id: str
    refresh_token: str
    amr: tuple[str, ...]
    auth_time: int  # when the user signed in to start the session; a refresh keeps it
    redirect_to: str | None = None


@dataclass(frozen=True)
class Principal:
    user: User
    session_id: str
    via: str  # "bearer" or "cookie"


@dataclass(frozen=True)
class Me:
    user: User
    passkeys: int


def unauthorized(message: str = "Sign in first.") -> ApiError:
    return ApiError(401, "unauthorized", message, {"www-authenticate": "Bearer"})


@dataclass(frozen=True)
class Proof:
    """How a user just proved who they are, for complete_sign_in: the method's name as webhooks
    report it ("email", "otp", "passkey"), its amr values, and where to go afterwards."""

    method: str
    amr: tuple[str, ...]
    redirect_to: str | None = None


def complete_sign_in(
    conn: Connection, refresh_ttl: float, outbox: events.Outbox, user: User, proof: Proof,
    client: Client, now: float,
) -> SignIn:
    """What every sign-in method ends with, inside its own write transaction: a new session with
    its refresh token, the user's last sign-in, and the login.succeeded event."""
    refresh_token = new_token()
    session = store.Session(
        new_id(), user.id, proof.amr, client.ip, client.user_agent, int(now), int(now),
        int(now + refresh_ttl), int(now),
    )
    store.insert(conn, session, token_hash(refresh_token))
    users.mark_signed_in(conn, user.id, now)
    events.emit(conn, outbox, "login.succeeded", user, now, session_id=session.id, method=proof.method)
    return SignIn(user, session.id, refresh_token, proof.amr, session.auth_time, proof.redirect_to)


def access_token(deps: SessionDeps, sign_in: SignIn) -> str:
    return deps.signer.issue(
        user_id=sign_in.user.id, session_id=sign_in.session_id, email=sign_in.user.email,
        amr=sign_in.amr, auth_time=sign_in.auth_time, now=deps.clock(),
    )


async def refresh(deps: SessionDeps, refresh_token: str, client: Client) -> SignIn:
    now = deps.clock()
    old_hash, new = token_hash(refresh_token), new_token()

    @concurrent  # the rotation is one statement; a second use, after it, finds the rotated token
    def exchange(conn: Connection) -> SignIn | str:
        session = store.rotate(conn, old_hash, token_hash(new), now)
        user = users.by_id(conn, session.user_id) if session else None
        if session and user:
            _audit(conn, "session_refreshed", True, client, now, user, {"session_id": session.id})
            return SignIn(user, session.id, new, session.amr, session.auth_time)
        reused = store.session_of_rotated(conn, old_hash)
        if reused is None:
            return "invalid"
        if store.revoke(conn, reused.id, now, "refresh_token_reused"):
            deps.sessions_ended(conn, [reused.id], now)
        owner = users.by_id(conn, reused.user_id)
        _audit(conn, "refresh_token_reused", False, client, now, owner, {"session_id": reused.id})
        return "reused"

    outcome = await deps.db.write(exchange)
    deps.metrics.attempt("refresh", not isinstance(outcome, str))
    if outcome == "reused":
        raise ApiError(401, "refresh_token_reused", "This refresh token was already used; the session is ended.")
    if isinstance(outcome, str):
        raise ApiError(401, "invalid_token", "The refresh token is invalid, expired or revoked.")
    return outcome


async def authenticate_bearer(deps: SessionDeps, token: str) -> Principal:
    try:
        claims = deps.signer.verify(token, deps.clock())
    except InvalidAccessToken:
        raise ApiError(401, "invalid_token", "The access token is invalid or expired.",
                       {"www-authenticate": 'Bearer error="invalid_token"'}) from None
    return await _principal(deps, claims.session_id, "bearer")


async def authenticate_cookie(deps: SessionDeps, cookie: str) -> Principal:
    try:
        session_id = deps.cookies.loads(cookie, max_age=int(deps.jwt.refresh_ttl))
    except (BadSignature, *DECODING_ERRORS):  # the cookie is anyone's input, like a token
        raise unauthorized("Your session has ended; sign in again.") from None
    return await _principal(deps, str(session_id), "cookie")


async def _principal(deps: SessionDeps, session_id: str, via: str) -> Principal:
    now = deps.clock()

    user = await deps.db.lookup(store.active_user, session_id, now)  # on every authenticated request: by key, no thread hop
    if user is None:
        raise ApiError(401, "invalid_token", "This session has ended; sign in again.")
    return Principal(user, session_id, via)


async def require_recent_sign_in(deps: SessionDeps, principal: Principal) -> None:
    """Some actions (adding a passkey) need the person to have signed in within
    auth.reauth_window, so a stolen access token or cookie cannot make itself a permanent key.
    The session's sign-in time counts, not its last refresh."""
    window = deps.auth.reauth_window
    signed_in_at = await deps.db.read(store.auth_time, principal.session_id)
    if signed_in_at is None or deps.clock() - signed_in_at > window:
        # RFC 9470 (step-up authentication) says the same to a client that knows it.
        challenge = f'Bearer error="insufficient_user_authentication", max_age={int(window)}'
        raise ApiError(403, "reauthentication_required", "Sign in again to confirm it is you, then retry.",
                       {"www-authenticate": challenge})


def cookie_value(deps: SessionDeps, session_id: str) -> str:
    return deps.cookies.dumps(session_id)


async def me(deps: SessionDeps, principal: Principal) -> Me:
    count = await deps.db.lookup(deps.count_passkeys, principal.user.id)
    return Me(principal.user, count)


async def logout(deps: SessionDeps, principal: Principal, client: Client) -> None:
    await end_session(deps, principal, principal.session_id, client, event="logout")


async def logout_by_refresh_token(deps: SessionDeps, refresh_token: str, client: Client) -> None:
    now = deps.clock()

    def revoke(conn: Connection) -> bool:
        session = store.by_refresh_hash(conn, token_hash(refresh_token))
        if session is None or not store.revoke(conn, session.id, now, "logout"):
            return False
        deps.sessions_ended(conn, [session.id], now)
        _audit(conn, "logout", True, client, now, users.by_id(conn, session.user_id), {"session_id": session.id})
        return True

    if not await deps.db.write(revoke):
        raise ApiError(401, "invalid_token", "The refresh token is invalid, expired or revoked.")


async def list_sessions(deps: SessionDeps, principal: Principal) -> list[store.Session]:
    return await deps.db.read(store.list_active, principal.user.id, deps.clock())


async def end_session(
    deps: SessionDeps, principal: Principal, session_id: str, client: Client, event: str = "sessions_revoked"
) -> None:
    """End one of the principal's own sessions; someone else's, or an unknown one, is 404."""
    now = deps.clock()

    def revoke(conn: Connection) -> bool:
        session = store.active(conn, session_id, now)
        if session is None or session.user_id != principal.user.id:
            return False
        store.revoke(conn, session_id, now, event)
        deps.sessions_ended(conn, [session_id], now)
        details: dict[str, object] = {"session_id": session_id, "revoked": 1}
        _audit(conn, event, True, client, now, principal.user, details)
        if event == "sessions_revoked":
            events.emit(conn, deps.outbox, "sessions.revoked", principal.user, now, session_id=session_id, revoked=1)
        return True

    if not await deps.db.write(revoke):
        raise ApiError(404, "not_found", "No such session.")


async def end_other_sessions(deps: SessionDeps, principal: Principal, client: Client) -> int:
    """End every session of the user but the caller's; how many were ended."""
    now = deps.clock()

    def revoke(conn: Connection) -> int:
        others = [s.id for s in store.list_active(conn, principal.user.id, now) if s.id != principal.session_id]
        for session_id in others:
            store.revoke(conn, session_id, now, "sessions_revoked")
        deps.sessions_ended(conn, others, now)
        if others:
            _audit(conn, "sessions_revoked", True, client, now, principal.user, {"revoked": len(others)})
            events.emit(conn, deps.outbox, "sessions.revoked", principal.user, now, revoked=len(others))
        return len(others)

    return await deps.db.write(revoke)


async def end_browser_session(deps: SessionDeps, session_id: str, client: Client, event: str, **details: object) -> bool:
    """End a browser session (RP-initiated logout); False if it was no longer active."""
    now = deps.clock()

    def revoke(conn: Connection) -> bool:
        session = store.active(conn, session_id, now)
        if session is None or not store.revoke(conn, session_id, now, event):
            return False
        deps.sessions_ended(conn, [session_id], now)
        _audit(conn, event, True, client, now, users.by_id(conn, session.user_id), {"session_id": session_id, **details})
        return True

    ended: bool = await deps.db.write(revoke)
    return ended


async def list_apps(deps: SessionDeps, principal: Principal) -> list[users.Consent]:
    """The OIDC clients the user allowed (remembered consents), for /account's "Apps"."""
    return await deps.db.read(users.consents_of, principal.user.id)


async def revoke_app(deps: SessionDeps, principal: Principal, client_id: str, client: Client) -> bool:
    """Forget the consent and end that client's tokens for the user; False for an unknown one."""
    now = deps.clock()

    def revoke(conn: Connection) -> bool:
        if not users.forget_consent(conn, principal.user.id, client_id, now):
            return False
        _audit(conn, "oidc_consent_revoked", True, client, now, principal.user, {"client_id": client_id})
        return True

    done: bool = await deps.db.write(revoke)
    return done


def _audit(
    conn: Connection, event: str, success: bool, client: Client, now: float,
    user: User | None, details: dict[str, object],
) -> None:
    audit.record(
        conn,
        audit.AuditEvent(
            event, success, user.id if user else None, user.email if user else None,
            client.ip, client.user_agent, details,
        ),
        now,
    )
