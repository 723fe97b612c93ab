"""OIDC clients as Authlib sees them (ClientMixin), made from the settings of either source
(`[[oidc.clients]]` or the admin API, clients/catalogue.py). An admin API client's secret is
known only by its SHA-256 (secret_sha256), compared in constant time like a config file's."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from authlib.oauth2.rfc6749 import ClientMixin

from passwordless.clients.catalogue import Catalogue
from passwordless.config.settings import OidcClientSettings
from passwordless.platform.db.types import Connection


@dataclass(frozen=True)
class Client(ClientMixin):
    settings: OidcClientSettings

    @property
    def id(self) -> str:
        return self.settings.id

    @property
    def id_token_signed_response_alg(self) -> str:
        return self.settings.id_token_signed_response_alg

    def get_client_id(self) -> str:
        return self.settings.id

    def get_default_redirect_uri(self) -> None:
        return None  # OIDC: redirect_uri is required

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.settings.scopes)
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.settings.redirect_uris  # exact string match (OIDC.md)

    def check_client_secret(self, client_secret: str) -> bool:
        s = self.settings
        if s.public or not client_secret:
            return False
        if s.secret:
            return hmac.compare_digest(client_secret.encode(), s.secret.encode())
        digest = hashlib.sha256(client_secret.encode()).hexdigest()
        return hmac.compare_digest(digest, s.secret_sha256.lower())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.settings.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "refresh_token":
            return "offline_access" in self.settings.scopes
        return grant_type == "authorization_code"

    @property
    def pkce_required(self) -> bool:
        return self.settings.public or self.settings.require_pkce

    def admits(self, email: str, groups: Iterable[str]) -> bool:
        """allowed_emails ("*@example.com" patterns) and allowed_groups (one is enough)."""
        s = self.settings
        email = email.lower()
        if s.allowed_emails and not any(fnmatchcase(email, p.lower()) for p in s.allowed_emails):
            return False
        return not s.allowed_groups or bool(set(s.allowed_groups) & set(groups))


def find_client(conn: Connection, catalogue: Catalogue, client_id: str) -> Client | None:
    entry = catalogue.find(conn, client_id)
    return Client(entry.settings) if entry else None
