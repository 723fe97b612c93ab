"""RP-Initiated Logout 1.0 (OIDC.md, "Sessions and logout"): which client asks, whether its
id_token_hint is ours (an expired one still names the client), and where the browser may go
afterwards (a post_logout_redirect_uri registered for that client, exact match, with `state`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from passwordless.oidc import signing
from passwordless.oidc.clients import Client, find_client
from passwordless.oidc.service import OidcDeps
from passwordless.platform.db.types import Connection


@dataclass(frozen=True)
class Logout:
    """What a logout request comes to: the client (if one is named), the user the valid
    id_token_hint was issued to (None: no valid hint), where to go afterwards (None: our own
    signed-out page), or a problem that stops it (an error page)."""

    client: Client | None
    hint_sub: str | None
    redirect_to: str | None
    fields: list[tuple[str, str]]  # for the confirmation form: the request again, without the hint
    problem: str | None = None


def _with_state(uri: str, state: str) -> str:
    if not state:
        return uri
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode({"state": state})


async def plan(deps: OidcDeps, data: dict[str, str]) -> Logout:
    hint, client_id = data.get("id_token_hint", ""), data.get("client_id", "")
    claims = None
    if hint:
        claims = await deps.db.read(_verified_hint, hint, deps.issuer, deps.clock())
    named = claims["aud"] if claims else client_id
    if claims and client_id and client_id != claims["aud"]:
        return Logout(None, None, None, [], "The application that asked is not the one the sign-in was for.")
    client = await deps.db.lookup(find_client, deps.clients, named) if named else None
    uri, state = data.get("post_logout_redirect_uri", ""), data.get("state", "")
    redirect_to = _with_state(uri, state) if client and uri in client.settings.post_logout_redirect_uris else None
    fields = [(k, v) for k, v in (("client_id", client.id if client else ""), ("post_logout_redirect_uri", uri),
                                  ("state", state)) if v]
    return Logout(client, claims["sub"] if claims else None, redirect_to, fields)


def _verified_hint(conn: Connection, hint: str, issuer: str, now: float) -> dict[str, Any] | None:
    return signing.verify_id_token_hint(signing.published(conn, now), hint, issuer)
