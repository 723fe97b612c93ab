"""Authlib's authorization server on one database unit: `protocol(conn, ...)` builds the server
whose hooks read and write through `conn`, so a code redemption, its tokens and its audit row
commit together. Authlib decides the protocol; this module only stores and signs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import AuthorizationCodeMixin, OpenIDCode, UserInfo

from passwordless.clients.catalogue import Catalogue
from passwordless.config.settings import OidcSettings
from passwordless.oidc import signing, store
from passwordless.oidc.backchannel import Backchannel
from passwordless.oidc.clients import Client, find_client
from passwordless.platform import audit
from passwordless.platform.client import Client as Caller
from passwordless.platform.crypto import new_id, new_token, token_hash
from passwordless.platform.db.types import Connection
from passwordless.sessions import store as sessions
from passwordless.users import store as users
from passwordless.users.store import User


@dataclass(frozen=True)
class EndUser:
    """The signed-in person as Authlib's `user`: who, through which browser session, and how."""

    user: User
    session_id: str
    amr: tuple[str, ...]
    auth_time: int

    def get_user_id(self) -> str:
        return self.user.id


@dataclass
class Answer:
    """Authlib's (status, body, headers); RFC 9207's extension edits `location`."""

    status: int
    body: Any
    headers: list[tuple[str, str]]

    @property
    def location(self) -> str | None:
        return dict(self.headers).get("Location")

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != "Location"] + [("Location", value)]


class Request(OAuth2Request):
    """An HTTP request already read by the route (Authlib's side is synchronous)."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str], args: dict[str, str], form: dict[str, str],
                 datalist: dict[str, list[str]]) -> None:
        super().__init__(method, uri, headers=headers)
        self._args, self._form = args, form
        self.payload = BasicOAuth2Payload({**args, **form})
        self.payload._datalist = datalist

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass
class Context:
    """What one unit's server works with."""

    conn: Connection
    clients: Catalogue
    settings: OidcSettings
    issuer: str
    now: float
    caller: Caller
    backchannel: Backchannel
    published: list[Any] = field(default_factory=list)

    def keys(self) -> list[Any]:
        if not self.published:
            self.published = signing.published(self.conn, self.now)
        return self.published

    def audit(self, event: str, success: bool, user: User | None, **details: object) -> None:
        audit.record(self.conn, audit.AuditEvent(
            event, success, user.id if user else None, user.email if user else None,
            self.caller.ip, self.caller.user_agent, details,
        ), self.now)


class _Code(AuthorizationCodeMixin):
    def __init__(self, code_hash: bytes, code: store.Code) -> None:
        self.code_hash, self.code = code_hash, code

    @property
    def code_challenge(self) -> str | None:  # read by Authlib's CodeChallenge
        return self.code.code_challenge

    @property
    def code_challenge_method(self) -> str | None:
        return self.code.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.code.redirect_uri

    def get_scope(self) -> str:
        return self.code.scope

    def get_nonce(self) -> str | None:
        return self.code.nonce

    def get_auth_time(self) -> int:
        return self.code.auth_time

    def get_amr(self) -> list[str]:
        return list(self.code.amr)

    def get_acr(self) -> None:
        return None


class _Server(AuthorizationServer):
    def __init__(self, ctx: Context) -> None:
        # No scopes_supported: a scope we do not know ("profile", which many clients ask for) is
        # left out of the grant (Client.get_allowed_scope), not refused (RFC 6749 3.3).
        super().__init__(scopes_supported=None)
        self.ctx = ctx

    def query_client(self, client_id: str) -> Client | None:
        return find_client(self.ctx.conn, self.ctx.clients, client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        ctx, jti, exp = self.ctx, token.pop("_jti"), token.pop("_exp")
        end_user: EndUser = request.user
        if request.authorization_code is not None:
            grant = store.Grant(
                new_id(), request.client.id, end_user.user.id, end_user.session_id, token["scope"], end_user.amr,
                end_user.auth_time, int(ctx.now + ctx.settings.refresh_ttl),
            )
            store.insert_grant(ctx.conn, grant, ctx.now)
            request.grant_id = grant.id
        store.insert_access(ctx.conn, jti, request.grant_id, exp)
        if "refresh_token" in token:
            expires = int(ctx.now + ctx.settings.refresh_ttl)
            store.insert_refresh(ctx.conn, token_hash(token["refresh_token"]), request.grant_id, ctx.now, expires)
        ctx.audit("oidc_token_issued", True, end_user.user, client_id=request.client.id,
                  grant_type=request.payload.grant_type, scope=token["scope"])

    def create_oauth2_request(self, request: Request) -> Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Answer:
        return Answer(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class _Tokens:
    """Access tokens are RFC 9068 JWTs; refresh tokens random, only with offline_access."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __call__(self, grant_type: str, client: Client, user: EndUser | None = None, scope: str | None = None,
                 expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        assert user is not None
        ctx, scope = self.ctx, scope or ""
        ttl, now, jti = int(ctx.settings.access_ttl), int(ctx.now), new_id()
        claims = {
            "iss": ctx.issuer, "sub": user.user.id, "aud": client.id, "client_id": client.id, "scope": scope,
            "auth_time": user.auth_time, "jti": jti, "iat": now, "exp": now + ttl,
        }
        alg = client.id_token_signed_response_alg
        key = signing.signing_key(ctx.keys(), alg, ctx.now)
        token: dict[str, Any] = {
            "token_type": "Bearer", "access_token": signing.sign(key, alg, claims, signing.ACCESS_TYPE),
            "expires_in": ttl, "scope": scope, "_jti": jti, "_exp": now + ttl,
        }
        if include_refresh_token and "offline_access" in scope.split():
            token["refresh_token"] = new_token()
        return token


class _OpenIDCode(OpenIDCode):
    def __init__(self, ctx: Context) -> None:
        super().__init__(require_nonce=False)
        self.ctx = ctx

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # a nonce is the client's to check in the ID token; codes are single use

    def resolve_client_private_key(self, client: Client) -> Any:
        return signing.signing_key(self.ctx.keys(), client.id_token_signed_response_alg, self.ctx.now)

    def get_encode_header(self, client: Client) -> dict[str, str]:
        key = self.resolve_client_private_key(client)
        return {"alg": client.id_token_signed_response_alg, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(self.ctx.now)
        return {"iss": self.ctx.issuer, "aud": client.id, "iat": now, "exp": now + int(self.ctx.settings.id_token_ttl)}

    def generate_user_info(self, user: EndUser, scope: str) -> UserInfo:
        return user_info(self.ctx.conn, user.user, user.session_id, scope)


def user_info(conn: Connection, user: User, session_id: str | None, scope: str) -> UserInfo:
    """`sub` and the claims of the granted scopes (and `sid` in the ID token)."""
    info = UserInfo(sub=user.id)
    if session_id:
        info["sid"] = session_id
    scopes = scope.split()
    if "email" in scopes:
        info.update(email=user.email, email_verified=True)
    if "groups" in scopes:
        info["groups"] = store.groups_of(conn, user.id)
    return info


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @property
    def ctx(self) -> Context:
        ctx: Context = self.server.ctx
        return ctx

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        ctx, end_user, data = self.ctx, request.user, request.payload.data
        store.insert_code(ctx.conn, token_hash(code), store.Code(
            request.client.id, end_user.user.id, end_user.session_id, request.payload.redirect_uri,
            request.scope, data.get("nonce"), data.get("code_challenge"), data.get("code_challenge_method"),
            end_user.amr, end_user.auth_time, int(ctx.now + ctx.settings.code_ttl),
        ), ctx.now)

    def query_authorization_code(self, code: str, client: Client) -> _Code | None:
        ctx, code_hash = self.ctx, token_hash(code)
        found = store.live_code(ctx.conn, code_hash, ctx.now)
        if found is None:
            grant_id = store.grant_of_spent_code(ctx.conn, code_hash)
            if grant_id and store.revoke_grant(ctx.conn, grant_id, ctx.now, "code_reused"):
                ctx.audit("oidc_code_reused", False, None, client_id=client.id, grant_id=grant_id)
            return None
        return _Code(code_hash, found) if found.client_id == client.id else None

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        store.spend_code(self.ctx.conn, authorization_code.code_hash, self.request.grant_id, self.ctx.now)

    def authenticate_user(self, authorization_code: _Code) -> EndUser | None:
        code = authorization_code.code
        user = users.by_id(self.ctx.conn, code.user_id)
        return EndUser(user, code.session_id, code.amr, code.auth_time) if user else None


@dataclass(frozen=True)
class _Credential:
    """A grant as Authlib's RefreshTokenGrant reads its credential."""

    grant: store.Grant

    def get_scope(self) -> str:
        return self.grant.scope

    def check_client(self, client: Client) -> bool:
        return self.grant.client_id == client.id


class _RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    @property
    def ctx(self) -> Context:
        ctx: Context = self.server.ctx
        return ctx

    def authenticate_refresh_token(self, refresh_token: str) -> _Credential | None:
        ctx, hashed = self.ctx, token_hash(refresh_token)
        grant_id = store.rotate_refresh(ctx.conn, hashed, ctx.now)
        grant = store.live_grant(ctx.conn, grant_id, ctx.now) if grant_id else None
        if grant is not None and grant.client_id == self.request.client.id:
            self.request.grant_id = grant.id
            return _Credential(grant)
        known = store.refresh_grant(ctx.conn, hashed)
        if known and known[1] and store.revoke_grant(ctx.conn, known[0], ctx.now, "refresh_token_reused"):
            ctx.audit("oidc_refresh_reused", False, None, client_id=self.request.client.id, grant_id=known[0])
            # The same reuse detection as /auth/refresh: the browser session it rides on ends too.
            session_id = store.session_of_grant(ctx.conn, known[0])
            if session_id and sessions.revoke(ctx.conn, session_id, ctx.now, "refresh_token_reused"):
                ctx.backchannel.sessions_ended(ctx.conn, [session_id], ctx.now)
        return None

    def authenticate_user(self, credential: _Credential) -> EndUser | None:
        grant = credential.grant
        user = users.by_id(self.ctx.conn, grant.user_id)
        return EndUser(user, grant.session_id, grant.amr, grant.auth_time) if user else None

    def revoke_old_credential(self, credential: _Credential) -> None:
        pass  # the old refresh token was spent when it was read (store.rotate_refresh)


def protocol(ctx: Context) -> _Server:
    server = _Server(ctx)
    server.register_token_generator("default", _Tokens(ctx))
    server.register_grant(_CodeGrant, [CodeChallenge(required=True), _OpenIDCode(ctx)])
    server.register_grant(_RefreshGrant)
    server.register_extension(_Issuer(ctx.issuer))
    return server


class _Issuer(IssuerParameter):
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


def dumps(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body)
