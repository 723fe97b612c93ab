"""The OpenID Connect provider (OIDC.md) driven as a client drives it (PKCE from Authlib's
RFC 7636 code; Authlib's own httpx client is deprecated for httpx2, which is not installed),
against the app in-process: discovery, authorization with PKCE, sign-in on
the hosted page by emailed code, consent, tokens checked against the JWKS with joserfc,
userinfo, refresh with reuse detection, revocation and introspection; and what must be refused."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from passwordless.keys import service as keys
from passwordless.platform import migrate
from tests.conftest import MakeConfig
from tests.support.app import AppServer
from tests.support.signin import FILE_MAIL, NO_RATE_LIMITS, count, last_email, token_and_code

pytestmark = pytest.mark.anyio

SECRET = "grafana-secret-0123456789abcdefghijkl"
REDIRECT = "https://app.example.com/callback"
CLIENTS = f'''
[[oidc.clients]]
id = "grafana"
name = "Grafana"
secret = "{SECRET}"
redirect_uris = ["{REDIRECT}"]

[[oidc.clients]]
id = "spa"
public = true
redirect_uris = ["{REDIRECT}"]
scopes = ["openid", "email"]
skip_consent = true

[[oidc.clients]]
id = "legacy"
secret = "{SECRET}"
redirect_uris = ["{REDIRECT}"]
require_pkce = false
skip_consent = true

[[oidc.clients]]
id = "partners"
secret = "{SECRET}"
redirect_uris = ["{REDIRECT}"]
allowed_emails = ["*@partner.org"]
'''
EMAIL = "ada@example.com"


class Server(AppServer):
    def origin(self) -> dict[str, str]:
        return {"origin": self.config.server.public_url}

    async def sign_in_browser(self, sign_in_url: str, email: str = EMAIL) -> httpx.Response:
        """The hosted page: email, then the emailed code; answers the redirect after sign-in."""
        query = parse_qs(urlsplit(sign_in_url).query)
        redirect_to = query["redirect_to"][0]
        page = await self.http.get(sign_in_url)
        assert page.status_code == 200 and redirect_to in unescape(page.text)
        sent = await self.http.post("/", data={"email": email, "redirect_to": redirect_to}, headers=self.origin())
        assert sent.status_code == 200, sent.text
        _, code = token_and_code((await last_email(self.config, email)).text)
        signed_in = await self.http.post(
            "/sign-in/code", data={"email": email, "code": code, "redirect_to": redirect_to}, headers=self.origin()
        )
        assert signed_in.status_code == 303 and signed_in.headers["location"] == redirect_to
        return await self.http.get(redirect_to)

    async def consent(self, page: httpx.Response, decision: str = "allow") -> httpx.Response:
        assert page.status_code == 200 and "Allow" in page.text, page.text
        fields = dict(re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text))
        fields = {k: unescape(v) for k, v in fields.items()}
        return await self.http.post("/oauth2/authorize/consent", data={**fields, "decision": decision}, headers=self.origin())


@pytest.fixture
async def server(make_config: MakeConfig) -> AsyncIterator[Server]:
    async with Server.serving(make_config(FILE_MAIL + NO_RATE_LIMITS + CLIENTS)) as s:
        yield s


class OAuthClient:
    """A relying party: builds authorization URLs, redeems codes, refreshes, calls userinfo."""

    def __init__(self, server: Server, client_id: str, secret: str | None) -> None:
        self.server, self.client_id, self.secret = server, client_id, secret
        self.scope = "openid email groups offline_access"
        self.access_token = ""

    async def __aenter__(self) -> OAuthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def _auth(self, data: dict[str, str]) -> dict[str, Any]:
        if self.secret is None:
            return {"data": {**data, "client_id": self.client_id}}
        return {"data": data, "auth": (self.client_id, self.secret)}

    async def _token(self, data: dict[str, str]) -> dict[str, Any]:
        answer = await self.server.http.post("/oauth2/token", **self._auth(data))
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        token: dict[str, Any] = answer.json()
        self.access_token = token["access_token"]
        return token

    async def fetch_token(self, code: str, verifier: str) -> dict[str, Any]:
        return await self._token({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                  "code_verifier": verifier})

    async def refresh_token(self, refresh_token: str) -> dict[str, Any]:
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def get(self, path: str) -> httpx.Response:
        return await self.server.http.get(path, headers={"authorization": f"Bearer {self.access_token}"})

    async def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return await self.server.http.post(path, **self._auth(data))


def oauth(server: Server, client_id: str = "grafana", secret: str | None = SECRET) -> OAuthClient:
    return OAuthClient(server, client_id, secret)


async def authorize_url(server: Server, client: OAuthClient, verifier: str, **params: str) -> tuple[str, str]:
    metadata = (await server.http.get("/.well-known/openid-configuration")).json()
    state = generate_token(16)
    query = {
        "response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT, "scope": client.scope,
        "state": state, "nonce": "n-0S6_WzA2Mj", "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256", **params,
    }
    url = str(httpx.URL(metadata["authorization_endpoint"], params=query))
    return url, state


def callback(location: str) -> dict[str, str]:
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def full_sign_in(server: Server, client: OAuthClient) -> tuple[dict[str, Any], str]:
    verifier = generate_token(48)
    url, state = await authorize_url(server, client, verifier)
    asked = await server.http.get(url)
    assert asked.status_code == 303 and asked.headers["location"].startswith("/?")
    back = await server.sign_in_browser(asked.headers["location"])
    answer = await server.consent(back)
    assert answer.status_code == 303
    params = callback(answer.headers["location"])
    assert params["state"] == state and params["iss"] == server.config.server.public_url
    return await client.fetch_token(params["code"], verifier), params["code"]


async def test_discovery_lists_the_contracts_metadata(server: Server) -> None:
    issuer = server.config.server.public_url
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        doc = (await server.http.get(path)).json()
        assert doc["issuer"] == issuer and doc["token_endpoint"] == f"{issuer}/oauth2/token"
        assert doc["id_token_signing_alg_values_supported"][0] == "RS256"
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert doc["authorization_response_iss_parameter_supported"] is True
    jwks = (await server.http.get("/.well-known/jwks.json")).json()
    assert any(k["kty"] == "RSA" and k["alg"] == "RS256" for k in jwks["keys"])


async def test_the_whole_flow_with_a_standard_client(server: Server) -> None:
    async with oauth(server) as client:
        token, code = await full_sign_in(server, client)
        assert token["token_type"] == "Bearer" and "refresh_token" in token

        keys = KeySet.import_key_set((await server.http.get("/.well-known/jwks.json")).json())
        id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
        claims = id_token.claims
        assert claims["iss"] == server.config.server.public_url and claims["aud"] == "grafana"
        assert claims["nonce"] == "n-0S6_WzA2Mj" and claims["amr"] == ["otp"] and claims["email"] == EMAIL
        assert claims["email_verified"] is True and claims["groups"] == [] and claims["sid"] and claims["at_hash"]
        access = jwt.decode(token["access_token"], keys, algorithms=["RS256"])
        assert access.header["typ"] == "at+jwt"
        assert access.claims["client_id"] == "grafana" and access.claims["aud"] == "grafana"
        assert access.claims["sub"] == claims["sub"] and "jti" in access.claims

        info = await client.get("/oauth2/userinfo")
        assert info.status_code == 200 and info.json() == {
            "sub": claims["sub"], "email": EMAIL, "email_verified": True, "groups": []
        }
        me = await server.http.get("/auth/me", headers={"authorization": f"Bearer {token['access_token']}"})
        assert me.status_code == 401

        refreshed = await client.refresh_token(token["refresh_token"])
        assert refreshed["refresh_token"] != token["refresh_token"]
        introspected = await client.post("/oauth2/introspect", {"token": refreshed["access_token"]})
        assert introspected.json()["active"] is True and introspected.json()["sub"] == claims["sub"]

        reused = await server.http.post("/oauth2/token", data={
            "grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, auth=("grafana", SECRET))
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        assert server.audit("oidc_refresh_reused")
        # The whole grant ended: the newer refresh token and its access token too.
        again = await server.http.post("/oauth2/token", data={
            "grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]}, auth=("grafana", SECRET))
        assert again.status_code == 400
        gone = await client.post("/oauth2/introspect", {"token": refreshed["access_token"]})
        assert gone.json() == {"active": False}
        assert (await client.get("/oauth2/userinfo")).status_code == 401
        assert server.audit("oidc_authorized") and server.audit("oidc_consent_granted") and server.audit("oidc_token_issued")


async def test_a_code_works_once_and_its_second_use_revokes_its_tokens(server: Server) -> None:
    async with oauth(server) as client:
        token, code = await full_sign_in(server, client)
        second = await server.http.post("/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": "x" * 43,
        }, auth=("grafana", SECRET))
        assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
        info = await server.http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {token['access_token']}"})
        assert info.status_code == 401
        refused = await server.http.post("/oauth2/token", data={
            "grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, auth=("grafana", SECRET))
        assert refused.status_code == 400


async def test_revocation_ends_the_grant(server: Server) -> None:
    async with oauth(server) as client:
        token, _ = await full_sign_in(server, client)
        revoked = await server.http.post("/oauth2/revoke", data={"token": token["refresh_token"]}, auth=("grafana", SECRET))
        assert revoked.status_code == 200
        assert (await client.get("/oauth2/userinfo")).status_code == 401
        unknown = await server.http.post("/oauth2/revoke", data={"token": "nothing"}, auth=("grafana", SECRET))
        assert unknown.status_code == 200
        wrong = await server.http.post("/oauth2/revoke", data={"token": "nothing"}, auth=("grafana", "wrong"))
        assert wrong.status_code == 401


async def test_consent_is_remembered_and_prompt_none_uses_the_session(server: Server) -> None:
    async with oauth(server) as client:
        await full_sign_in(server, client)
        url, state = await authorize_url(server, client, generate_token(48), prompt="none")
        answer = await server.http.get(url)
        assert answer.status_code == 302 and "code" in callback(answer.headers["location"])
        url, _ = await authorize_url(server, client, generate_token(48), prompt="consent")
        assert "Allow" in (await server.http.get(url)).text


async def test_prompt_none_without_a_session_is_login_required(server: Server) -> None:
    async with oauth(server) as client:
        url, state = await authorize_url(server, client, generate_token(48), prompt="none")
        answer = await server.http.get(url)
        params = callback(answer.headers["location"])
        assert params["error"] == "login_required" and params["state"] == state and params["iss"]


async def test_deny_gives_access_denied(server: Server) -> None:
    async with oauth(server) as client:
        url, _ = await authorize_url(server, client, generate_token(48))
        back = await server.sign_in_browser((await server.http.get(url)).headers["location"])
        answer = await server.consent(back, "deny")
        assert callback(answer.headers["location"])["error"] == "access_denied"


async def test_allowed_emails_shuts_others_out(server: Server) -> None:
    async with oauth(server, "partners") as client:
        url, _ = await authorize_url(server, client, generate_token(48))
        page = await server.sign_in_browser((await server.http.get(url)).headers["location"])
        assert page.status_code == 403 and "may not use" in page.text and "error=access_denied" in page.text
        assert server.audit("oidc_access_denied")


async def test_unknown_client_and_unregistered_redirect_never_redirect(server: Server) -> None:
    for params in ({"client_id": "nobody", "redirect_uri": REDIRECT},
                   {"client_id": "grafana", "redirect_uri": "https://evil.example/cb"}):
        answer = await server.http.get("/oauth2/authorize", params={"response_type": "code", "scope": "openid", **params})
        assert answer.status_code == 400 and "location" not in answer.headers
        assert answer.headers["content-type"].startswith("text/html")


async def test_pkce_is_required_and_plain_refused(server: Server) -> None:
    base = {"response_type": "code", "client_id": "spa", "redirect_uri": REDIRECT, "scope": "openid", "state": "s"}
    missing = await server.http.get("/oauth2/authorize", params=base)
    assert callback(missing.headers["location"])["error"] == "invalid_request"
    plain = await server.http.get("/oauth2/authorize", params={**base, "code_challenge": "a" * 43, "code_challenge_method": "plain"})
    assert callback(plain.headers["location"])["error"] == "invalid_request"


async def test_public_client_skips_consent_and_needs_the_verifier(server: Server) -> None:
    async with oauth(server, "spa", None) as client:
        client.scope = "openid email"
        verifier = generate_token(48)
        url, _ = await authorize_url(server, client, verifier)
        answer = await server.sign_in_browser((await server.http.get(url)).headers["location"])
        code = callback(answer.headers["location"])["code"]
        wrong = await server.http.post("/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": "spa",
            "code_verifier": generate_token(48)})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        assert wrong.headers["cache-control"] == "no-store"


async def test_without_clients_the_provider_is_off(make_config: MakeConfig) -> None:
    async with Server.serving(make_config(FILE_MAIL)) as s:
        assert (await s.http.get("/.well-known/openid-configuration")).status_code == 404
        assert (await s.http.post("/oauth2/token")).status_code == 404
        assert count(s.config, "signing_keys", "algorithm = 'RS256'") == 0


async def test_requests_are_counted_by_endpoint_and_result(server: Server) -> None:
    async with oauth(server) as client:
        await full_sign_in(server, client)
        await server.http.post("/oauth2/token", data={"grant_type": "authorization_code", "code": "x"},
                               auth=("grafana", "wrong"))
    metrics = server.deps().metrics
    def seen(endpoint: str, result: str) -> float:
        return metrics.oidc_requests.labels(endpoint, result)._value.get()
    assert seen("authorize", "sign_in") == 1 and seen("authorize", "consent") == 1 and seen("authorize", "success") == 1
    assert seen("token", "success") == 1 and seen("token", "invalid_client") == 1


async def test_signing_out_of_the_browser_session_ends_its_oidc_tokens(server: Server) -> None:
    async with oauth(server) as client:
        token, _ = await full_sign_in(server, client)
        out = await server.http.post("/account/sign-out", headers=server.origin())
        assert out.status_code == 303
        refused = await server.http.post("/oauth2/token", data={
            "grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, auth=("grafana", SECRET))
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        assert (await client.get("/oauth2/userinfo")).status_code == 401


async def test_prompt_login_and_an_old_sign_in_ask_to_sign_in_again(server: Server) -> None:
    async with oauth(server) as client:
        await full_sign_in(server, client)
        url, _ = await authorize_url(server, client, generate_token(48), prompt="login")
        again = await server.http.get(url)
        assert again.status_code == 303 and again.headers["location"].startswith("/?")
        continue_to = parse_qs(urlsplit(again.headers["location"]).query)["redirect_to"][0]
        assert "prompt" not in parse_qs(urlsplit(continue_to).query)  # no loop after signing in
        server.clock.advance(120)  # type: ignore[attr-defined]
        url, _ = await authorize_url(server, client, generate_token(48), max_age="60")
        assert (await server.http.get(url)).status_code == 303
        url, _ = await authorize_url(server, client, generate_token(48), max_age="600")
        assert (await server.http.get(url)).status_code == 302


async def test_api_tokens_are_refused_at_userinfo(server: Server) -> None:
    api = await server.sign_in("api.user@example.com")
    answer = await server.http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {api['access_token']}"})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"


async def test_introspection_is_for_confidential_clients_only(server: Server) -> None:
    answer = await server.http.post("/oauth2/introspect", data={"token": "x", "client_id": "spa"})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    unknown = await server.http.post("/oauth2/introspect", data={"token": "x"}, auth=("grafana", SECRET))
    assert unknown.json() == {"active": False}


async def test_revocation_and_introspection_without_a_token_are_invalid_requests(server: Server) -> None:
    # RFC 7009 §2.1 and RFC 7662 §2.1: the token parameter is required.
    for path in ("/oauth2/revoke", "/oauth2/introspect"):
        for form in ({}, {"token": ""}):
            answer = await server.http.post(path, data=form, auth=("grafana", SECRET))
            assert answer.status_code == 400, (path, form, answer.text)
            assert answer.json()["error"] == "invalid_request" and answer.headers["cache-control"] == "no-store"


async def test_a_client_may_ask_for_es256_id_tokens(make_config: MakeConfig) -> None:
    es = CLIENTS.replace('name = "Grafana"', 'name = "Grafana"\nid_token_signed_response_alg = "ES256"')
    async with Server.serving(make_config(FILE_MAIL + NO_RATE_LIMITS + es)) as s:
        async with oauth(s) as client:
            token, _ = await full_sign_in(s, client)
            keys = KeySet.import_key_set((await s.http.get("/.well-known/jwks.json")).json())
            assert jwt.decode(token["id_token"], keys, algorithms=["ES256"]).header["alg"] == "ES256"
            assert (await client.get("/oauth2/userinfo")).status_code == 200


async def test_keys_rotate_rotates_the_rsa_key_too(server: Server) -> None:
    made = await server.deps().db.write(keys.rotate_all, "HS256", server.clock())
    assert [k.algorithm for k in made] == ["RS256"]
    assert count(server.config, "signing_keys", "algorithm = 'RS256'") == 2


def test_the_migration_keeps_signing_keys_and_lets_rsa_in(tmp_path: Path) -> None:
    known = migrate.discover(migrate.default_dir("sqlite"))
    path = tmp_path / "auth.db"
    migrate.apply_to_file(path, known[:5])
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at, signs_from)"
                     " VALUES ('k1', 'ES256', 'pem', '{}', 1, 2)")
        try:
            conn.execute("INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at)"
                         " VALUES ('r0', 'RS256', 'pem', '{}', 1)")
            raise AssertionError("RS256 accepted before 0006")
        except sqlite3.IntegrityError:
            pass
    assert [m.version for m in migrate.apply_to_file(path, known)][0] == 6
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT kid, algorithm, signs_from FROM signing_keys").fetchall() == [("k1", "ES256", 2)]
        conn.execute("INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at)"
                     " VALUES ('r1', 'RS256', 'pem', '{}', 1)")
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


async def test_an_authorization_request_may_be_posted(server: Server) -> None:
    async with oauth(server) as client:
        verifier = generate_token(48)
        url, state = await authorize_url(server, client, verifier)
        posted = await server.http.post("/oauth2/authorize", data=dict(httpx.URL(url).params))
        assert posted.status_code == 303
        back = await server.sign_in_browser(posted.headers["location"])
        answer = await server.consent(back)
        params = callback(answer.headers["location"])
        assert params["state"] == state
        assert (await client.fetch_token(params["code"], verifier))["id_token"]
        # signed in now: a posted request goes straight to the consent page, which sends it again
        url, state = await authorize_url(server, client, generate_token(48), prompt="consent")
        page = await server.http.post("/oauth2/authorize", data=dict(httpx.URL(url).params))
        assert callback((await server.consent(page)).headers["location"])["state"] == state


async def test_one_rsa_key_however_many_servers_start(make_config: MakeConfig) -> None:
    config = make_config(FILE_MAIL + CLIENTS)
    async with Server.serving(config), Server.serving(config):
        pass
    async with Server.serving(config) as s:
        assert count(s.config, "signing_keys", "algorithm = 'RS256'") == 1
        jwks = (await s.http.get("/.well-known/jwks.json")).json()
        assert [k["kty"] for k in jwks["keys"]] == ["RSA"]


async def test_housekeeping_prunes_what_is_past_its_time(server: Server) -> None:
    from passwordless.housekeeping import service as housekeeping
    from passwordless.oidc import store as oidc_store

    async with oauth(server) as client:
        await full_sign_in(server, client)
    assert count(server.config, "oidc_grants") == 1 and count(server.config, "oidc_codes") == 1
    db, config = server.deps().db, server.config
    kept = await housekeeping.prune(db, config, server.clock() + 3600, more=oidc_store.PRUNERS)
    assert kept.gone["oidc_codes"] == 0 and kept.gone["oidc_grants"] == 0
    later = server.clock() + config.oidc.refresh_ttl + 2 * 86400
    await housekeeping.prune(db, config, later, more=oidc_store.PRUNERS)  # (the session's prune cascades too)
    for table in ("oidc_codes", "oidc_grants", "oidc_refresh_tokens", "oidc_access_tokens"):
        assert count(config, table) == 0, table


async def test_a_code_lives_code_ttl(server: Server) -> None:
    async with oauth(server, "legacy") as client:
        url, _ = await authorize_url(server, client, generate_token(48))
        answer = await server.sign_in_browser((await server.http.get(url)).headers["location"])
        code = callback(answer.headers["location"])["code"]
        server.clock.advance(61)  # type: ignore[attr-defined]
        late = await server.http.post("/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": "v" * 43},
            auth=("legacy", SECRET))
        assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


async def test_a_confidential_client_may_go_without_pkce_when_it_says_so(server: Server) -> None:
    base = {"response_type": "code", "client_id": "legacy", "redirect_uri": REDIRECT, "scope": "openid", "state": "s"}
    first = await server.http.get("/oauth2/authorize", params=base)
    answer = await server.sign_in_browser(first.headers["location"])
    code = callback(answer.headers["location"])["code"]
    token = await server.http.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}, auth=("legacy", SECRET))
    assert token.status_code == 200 and "refresh_token" not in token.json()  # no offline_access asked
    plain = await server.http.get("/oauth2/authorize", params={**base, "code_challenge": "a" * 43})
    assert callback(plain.headers["location"])["error"] == "invalid_request"  # a challenge without S256 is plain


async def test_redirect_uri_must_match_at_the_token_endpoint(server: Server) -> None:
    base = {"response_type": "code", "client_id": "legacy", "redirect_uri": REDIRECT, "scope": "openid"}
    answer = await server.sign_in_browser((await server.http.get("/oauth2/authorize", params=base)).headers["location"])
    code = callback(answer.headers["location"])["code"]
    wrong = await server.http.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT + "/other"}, auth=("legacy", SECRET))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


async def test_a_scope_we_do_not_know_is_left_out_not_refused(server: Server) -> None:
    async with oauth(server) as client:
        client.scope = "openid profile email"
        verifier = generate_token(48)
        url, _ = await authorize_url(server, client, verifier)
        back = await server.sign_in_browser((await server.http.get(url)).headers["location"])
        answer = await server.consent(back)
        token = await client.fetch_token(callback(answer.headers["location"])["code"], verifier)
        assert token["scope"] == "openid email" and "refresh_token" not in token


async def test_plain_http_off_loopback_is_refused_in_words(make_config: MakeConfig) -> None:
    config = make_config('[server]\npublic_url = "http://auth.lan:3000"\n' + FILE_MAIL + CLIENTS)
    async with Server.serving(config) as s:
        answer = await s.http.post("/oauth2/token", data={"grant_type": "authorization_code"})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "insecure_transport"
