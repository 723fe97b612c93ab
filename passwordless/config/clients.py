"""The rules an OpenID Connect client must meet (OIDC.md, "Clients and users"), one definition for
both of its sources: start-up refuses a `[[oidc.clients]]` table that breaks one (config/load.py),
and the admin API answers 400 for a client that would (clients/service.py)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import urlsplit

from passwordless.config.settings import OidcClientSettings

RESERVED_ID = "passwordless"  # the client_id (audience) of the API's own tokens


class Problem(NamedTuple):
    field: str  # the key that breaks the rule
    text: str


def client_secret_env(client_id: str) -> str:
    return "OIDC_CLIENT_" + "".join(c if c.isalnum() else "_" for c in client_id.upper()) + "_SECRET"


def client_problems(c: OidcClientSettings, production: bool) -> Iterator[Problem]:
    """Every rule the client breaks, first problem first."""
    if not c.id:
        yield Problem("id", "id is missing")
    if c.id == RESERVED_ID:
        yield Problem("id", 'id "passwordless" is the client_id of the API\'s own tokens: choose another')
    if not c.redirect_uris:
        yield Problem("redirect_uris", "redirect_uris is empty: expected at least one redirect URI")
    for field, uris in (("redirect_uris", c.redirect_uris), ("post_logout_redirect_uris", c.post_logout_redirect_uris)):
        yield from _uri_problems(field, uris, production)
    yield from _secret_problems(c, production)
    if "openid" not in c.scopes:
        yield Problem("scopes", 'scopes must include "openid"')


def _uri_problems(field: str, uris: tuple[str, ...], production: bool) -> Iterator[Problem]:
    for uri in uris:
        if "#" in uri:
            yield Problem(field, f"{_show(uri)} has a fragment: refused")
        if production and uri.startswith("http://") and not _loopback(uri):
            yield Problem(field, f"{_show(uri)} is plain http: refused in production (only a loopback address may be)")


def _secret_problems(c: OidcClientSettings, production: bool) -> Iterator[Problem]:
    if c.public and (c.secret or c.secret_sha256):
        yield Problem("public", "a public client has no secret: remove secret and secret_sha256")
    if c.public and not c.require_pkce:
        yield Problem("require_pkce", "require_pkce = false is refused for a public client")
    if not c.public and not (c.secret or c.secret_sha256):
        yield Problem(
            "secret",
            f"a confidential client without a secret: set secret (or {client_secret_env(c.id)}) or secret_sha256",
        )
    if not c.public and production and c.secret and len(c.secret) < 32:
        yield Problem("secret", "secret is shorter than 32 characters: refused in production")


def _show(uri: str) -> str:
    text = json.dumps(uri, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _loopback(uri: str) -> bool:
    host = urlsplit(uri).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
