"""The provider's operations, each one database unit around Authlib (server.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.oauth2 import OAuth2Error

from passwordless.clients.catalogue import Catalogue
from passwordless.config.settings import OidcSettings
from passwordless.oidc import signing, store
from passwordless.oidc.backchannel import Backchannel
from passwordless.oidc.clients import Client, find_client
from passwordless.oidc.server import Answer, Context, EndUser, Request, protocol, user_info
from passwordless.platform.client import Client as Caller
from passwordless.platform.clock import Clock
from passwordless.platform.crypto import token_hash
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.metrics import Metrics
from passwordless.sessions import store as sessions
from passwordless.users import store as users


@dataclass(frozen=True)
class OidcDeps:
    db: Database
    clock: Clock
    metrics: Metrics
    settings: OidcSettings
    clients: Catalogue  # the config file's and the admin API's (read at each use)
    issuer: str  # server.public_url
    backchannel: Backchannel


@dataclass(frozen=True)
class Invalid:
    """No client to answer to: an HTML error page, never a redirect."""

    sentence: str


@dataclass(frozen=True)
class Redirect:
    redirect_uri: str
    params: list[tuple[str, str]]
    form_post: bool

    @property
    def location(self) -> str:
        joiner = "&" if urlsplit(self.redirect_uri).query else "?"
        return self.redirect_uri + joiner + urlencode(self.params)


@dataclass(frozen=True)
class NeedsSignIn:
    continue_to: str  # our own /oauth2/authorize URL, to come back to
    login_hint: str


@dataclass(frozen=True)
class Denied:
    client: Client
    back: Redirect


@dataclass(frozen=True)
class Consent:
    client: Client
    scopes: tuple[str, ...]
    email: str
    request: list[tuple[str, str]]  # the authorization request, to send again with the answer


Outcome = Invalid | Redirect | NeedsSignIn | Denied | Consent


def _context(deps: OidcDeps, conn: Connection, now: float, caller: Caller) -> Context:
    return Context(conn, deps.clients, deps.settings, deps.issuer, now, caller, deps.backchannel)


def check_client(conn: Connection, deps: OidcDeps, req: Request) -> Client | Invalid:
    data = req.payload.data
    client = find_client(conn, deps.clients, data.get("client_id") or "")
    if client is None:
        return Invalid("This application is not known here, so it cannot sign you in.")
    if not client.check_redirect_uri(data.get("redirect_uri") or ""):
        return Invalid("This application asked to send you to an address it has not registered.")
    return client


def _pkce_problem(client: Client, data: dict[str, str]) -> str | None:
    challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
    if challenge and method != "S256":
        return "code_challenge_method must be S256"
    if client.pkce_required and not challenge:
        return "PKCE (code_challenge with S256) is required"
    return None


def _error(req: Request, issuer: str, error: str, description: str | None = None) -> Redirect:
    data = req.payload.data
    params = [("error", error), *([("error_description", description)] if description else [])]
    if data.get("state"):
        params.append(("state", data["state"]))
    params.append(("iss", issuer))
    return Redirect(data["redirect_uri"], params, data.get("response_mode") == "form_post")


def _answered(req: Request, answer: Answer) -> Redirect:
    location = dict(answer.headers)["Location"]
    redirect_uri = req.payload.data["redirect_uri"]
    own = set(parse_qsl(urlsplit(redirect_uri).query))
    params = [p for p in parse_qsl(urlsplit(location).query) if p not in own]
    return Redirect(redirect_uri, params, req.payload.data.get("response_mode") == "form_post")


def _continue_to(deps: OidcDeps, req: Request) -> str:
    """The authorization request to come back to after signing in: `prompt=login` is dropped (the
    sign-in just happened) and a max_age makes sure it was this sign-in that counts."""
    data = dict(req.payload.data)
    prompts = [p for p in data.pop("prompt", "").split() if p != "login"]
    if prompts:
        data["prompt"] = " ".join(prompts)
    data.setdefault("max_age", "600")
    return f"{deps.issuer}/oauth2/authorize?{urlencode(data)}"


def _max_age_exceeded(data: dict[str, str], auth_time: int, now: float) -> bool:
    raw = data.get("max_age")
    return raw is not None and raw.isdigit() and now - auth_time > int(raw)


async def authorize(
    deps: OidcDeps, req: Request, session_id: str | None, caller: Caller, decision: bool | None = None
) -> Outcome:
    """An authorization request, with the browser's session (if any) and the consent page's
    answer (if it is one)."""
    outcome = await _authorize(deps, req, session_id, caller, decision)
    deps.metrics.oidc_requests.labels("authorize", _result(outcome)).inc()
    return outcome


async def _authorize(
    deps: OidcDeps, req: Request, session_id: str | None, caller: Caller, decision: bool | None
) -> Outcome:
    client = await deps.db.lookup(check_client, deps, req)
    if isinstance(client, Invalid):
        return client
    problem = _pkce_problem(client, req.payload.data)
    if problem:
        return _error(req, deps.issuer, "invalid_request", problem)
    now = deps.clock()

    def unit(conn: Connection) -> Outcome:
        ctx = _context(deps, conn, now, caller)
        session = sessions.active(conn, session_id, now) if session_id else None
        user = users.by_id(conn, session.user_id) if session else None
        end_user = EndUser(user, session.id, session.amr, session.auth_time) if user and session else None
        server = protocol(ctx)
        try:
            grant = server.get_consent_grant(req, end_user)
        except OAuth2Error as exc:
            return _error(req, deps.issuer, exc.error, exc.description)
        data = req.payload.data
        prompts = set((data.get("prompt") or "").split())
        if end_user is None or "login" in prompts or _max_age_exceeded(data, end_user.auth_time, now):
            if "none" in prompts:
                return _error(req, deps.issuer, "login_required")
            return NeedsSignIn(_continue_to(deps, req), data.get("login_hint") or "")
        if not client.admits(end_user.user.email, store.groups_of(conn, end_user.user.id)):
            ctx.audit("oidc_access_denied", False, end_user.user, client_id=client.id)
            return Denied(client, _error(req, deps.issuer, "access_denied", "This user may not use this application."))
        scopes = frozenset(grant.request.scope.split())
        if decision is False:
            ctx.audit("oidc_access_denied", False, end_user.user, client_id=client.id, reason="consent_denied")
            return _error(req, deps.issuer, "access_denied", "The user did not allow it.")
        if decision is True:
            store.save_consent(conn, end_user.user.id, client.id, scopes, now)
            ctx.audit("oidc_consent_granted", True, end_user.user, client_id=client.id, scope=" ".join(sorted(scopes)))
        elif not client.settings.skip_consent and (
            "consent" in prompts or not scopes <= store.consented_scope(conn, end_user.user.id, client.id)
        ):
            if "none" in prompts:
                return _error(req, deps.issuer, "consent_required")
            asked = [(k, v) for k, v in data.items() if k != "decision"]
            return Consent(client, tuple(sorted(scopes)), end_user.user.email, asked)
        answer = server.create_authorization_response(req, grant_user=end_user, grant=grant)
        ctx.audit("oidc_authorized", True, end_user.user, client_id=client.id, scope=" ".join(sorted(scopes)))
        return _answered(req, answer)

    outcome: Outcome = await deps.db.write(unit)
    return outcome


def _result(outcome: Outcome) -> str:
    """oidc_requests_total's result of an authorization request."""
    if isinstance(outcome, Redirect):
        return dict(outcome.params).get("error", "success")
    return {Invalid: "invalid_request", NeedsSignIn: "sign_in", Denied: "access_denied", Consent: "consent"}[type(outcome)]


async def token(deps: OidcDeps, req: Request, caller: Caller) -> Answer:
    now = deps.clock()

    def unit(conn: Connection) -> Answer:
        answer: Answer = protocol(_context(deps, conn, now, caller)).create_token_response(req)
        return answer

    answer = await deps.db.write(unit)
    result = "success" if answer.status == 200 else str(answer.body.get("error", "error"))
    deps.metrics.oidc_requests.labels("token", result).inc()
    return answer


async def userinfo(deps: OidcDeps, access_token: str) -> dict[str, Any] | None:
    now = deps.clock()

    def unit(conn: Connection) -> dict[str, Any] | None:
        grant = _live_access_grant(conn, deps, access_token, now)
        user = users.by_id(conn, grant.user_id) if grant else None
        return dict(user_info(conn, user, None, grant.scope)) if grant and user else None

    found = await deps.db.read(unit)
    deps.metrics.oidc_requests.labels("userinfo", "success" if found else "invalid_token").inc()
    return found


def _live_access_grant(conn: Connection, deps: OidcDeps, access_token: str, now: float) -> store.Grant | None:
    claims = signing.verify_access_token(signing.published(conn, now), access_token, deps.issuer, now)
    if claims is None or find_client(conn, deps.clients, claims["client_id"]) is None:
        return None
    return store.live_access(conn, claims["jti"], now)


def _client_of(server: Any, req: Request, confidential_only: bool) -> Client | None:
    methods = ["client_secret_basic", "client_secret_post", *([] if confidential_only else ["none"])]
    try:
        client: Client = server.authenticate_client(req, methods, "revoke")
    except OAuth2Error:
        return None
    return client


async def revoke(deps: OidcDeps, req: Request, caller: Caller) -> bool:
    """RFC 7009: a refresh token ends its grant; an access token ends itself. False: the client
    did not authenticate. An unknown token is fine (200)."""
    now = deps.clock()
    raw = req.form.get("token") or ""

    def unit(conn: Connection) -> bool:
        ctx = _context(deps, conn, now, caller)
        client = _client_of(protocol(ctx), req, confidential_only=False)
        if client is None:
            return False
        refresh = store.refresh_grant(conn, token_hash(raw))
        grant = store.live_grant(conn, refresh[0], now) if refresh else None
        if grant and grant.client_id == client.id:
            store.revoke_grant(conn, grant.id, now, "revoked_by_client")
            return True
        claims = signing.verify_access_token(ctx.keys(), raw, deps.issuer, now)
        if claims and claims["client_id"] == client.id:
            store.revoke_access(conn, claims["jti"], now)
        return True

    done = await deps.db.write(unit)
    deps.metrics.oidc_requests.labels("revoke", "success" if done else "invalid_client").inc()
    return done


async def introspect(deps: OidcDeps, req: Request, caller: Caller) -> dict[str, Any] | None:
    """RFC 7662 for confidential clients; None: the client did not authenticate."""
    now = deps.clock()
    raw = req.form.get("token") or ""

    def unit(conn: Connection) -> dict[str, Any] | None:
        ctx = _context(deps, conn, now, caller)
        if _client_of(protocol(ctx), req, confidential_only=True) is None:
            return None
        claims = signing.verify_access_token(ctx.keys(), raw, deps.issuer, now)
        if claims and store.live_access(conn, claims["jti"], now):
            return {"active": True, "token_type": "Bearer", **claims}
        refresh = store.refresh_grant(conn, token_hash(raw))
        grant = store.live_grant(conn, refresh[0], now) if refresh and not refresh[1] else None
        if grant:
            return {"active": True, "token_type": "refresh_token", "client_id": grant.client_id, "sub": grant.user_id,
                    "scope": grant.scope, "exp": grant.expires_at, "iss": deps.issuer}
        return {"active": False}

    found = await deps.db.read(unit)
    deps.metrics.oidc_requests.labels("introspect", "success" if found else "invalid_client").inc()
    return found


def discovery(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "scopes_supported": ["openid", "email", "groups", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid", "at_hash",
            "email", "email_verified", "groups",
        ],
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
    }
