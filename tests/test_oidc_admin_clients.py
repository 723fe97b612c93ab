"""OpenID Connect clients through the admin API (OIDC.md, "Clients and users"; docs/api.md): made,
listed, changed, given a new secret and deleted; the secret shown once and working for a whole code
flow with a standard relying party; the provider turning on and off with the first and last client,
on every server sharing the database; config-file clients read-only; and every bad body a 400."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import MakeConfig
from tests.support.engine import SHARED_SECRET, cluster
from tests.support.signin import FILE_MAIL, NO_RATE_LIMITS, assert_error, count, rows
from tests.support.waiting import until
from tests.test_oidc import EMAIL, REDIRECT, OAuthClient, Server, authorize_url, callback, full_sign_in

pytestmark = pytest.mark.anyio

ADMIN_TOKEN = "admin-token-0123456789-abcdefghijklmnopqrstuvwxyz"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
ADMIN_SECTION = f'[admin]\ntoken = "{ADMIN_TOKEN}"\n'
BACK = "https://app.example.com/signed-out"
WIKI: dict[str, Any] = {
    "id": "wiki", "name": "Wiki", "redirect_uris": [REDIRECT], "post_logout_redirect_uris": [BACK],
    "backchannel_logout_uri": "https://app.example.com/backchannel",
}
CONFIG_CLIENT = f'''
[[oidc.clients]]
id = "grafana"
secret = "grafana-secret-0123456789abcdefghijkl"
redirect_uris = ["{REDIRECT}"]
'''
CLIENTS = "/admin/oidc/clients"
CLIENT_FIELDS = {
    "id", "name", "source", "redirect_uris", "post_logout_redirect_uris", "backchannel_logout_uri", "public",
    "require_pkce", "skip_consent", "scopes", "allowed_emails", "allowed_groups", "id_token_signed_response_alg",
    "created_at", "updated_at",
}


class Admin(Server):
    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, path, headers=ADMIN, **kwargs)

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = await self.admin(method, path, **kwargs)
        assert response.status_code == status, response.text
        assert status == 204 or response.headers["cache-control"] == "no-store"
        return response.json() if response.content else None

    async def provider_on(self) -> bool:
        status = (await self.http.get("/.well-known/openid-configuration")).status_code
        assert status in (200, 404)
        return status == 200


@pytest.fixture
async def server(make_config: MakeConfig) -> AsyncIterator[Admin]:
    async with Admin.serving(make_config(FILE_MAIL + NO_RATE_LIMITS + ADMIN_SECTION)) as s:
        yield s


def client_of(server: Server, client_id: str, secret: str | None) -> OAuthClient:
    return OAuthClient(server, client_id, secret)


# --- made, used, changed, deleted ----------------------------------------------------------------


async def test_the_first_client_turns_the_provider_on_and_its_secret_signs_in_with_a_standard_client(
    server: Admin, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert not await server.provider_on()
    assert (await server.http.post("/oauth2/token")).status_code == 404
    assert count(server.config, "signing_keys", "algorithm = 'RS256'") == 0  # no key before a client

    made = await server.ok("POST", CLIENTS, 201, json=WIKI)
    secret = made.pop("secret")
    assert isinstance(secret, str) and len(secret) >= 43  # 256 random bits
    assert set(made) == CLIENT_FIELDS  # the secret was the only other field
    assert made["id"] == "wiki" and made["source"] == "api" and made["redirect_uris"] == [REDIRECT]
    assert made["public"] is False and made["require_pkce"] is True and made["scopes"] == [
        "openid", "email", "groups", "offline_access"
    ]
    # The key is made and published before the answer: the JWKS has it at once.
    jwks = (await server.http.get("/.well-known/jwks.json")).json()
    assert [k["alg"] for k in jwks["keys"]] == ["RS256"]
    assert await server.provider_on()

    # Kept only as its SHA-256.
    (row,) = rows(server.config, "SELECT * FROM oidc_clients")
    assert bytes(row["secret_hash"]) == hashlib.sha256(secret.encode()).digest()
    assert secret not in json.dumps({k: str(v) for k, v in row.items()})

    token, _ = await full_sign_in(server, client_of(server, "wiki", secret))
    keys = KeySet.import_key_set((await server.http.get("/.well-known/jwks.json")).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["aud"] == "wiki" and claims["email"] == EMAIL and "refresh_token" in token

    # Never shown again: not in the list, not in one client, not in the audit log or the logs.
    listed = await server.ok("GET", CLIENTS)
    assert listed == {"clients": [made]}
    assert await server.ok("GET", f"{CLIENTS}/wiki") == made
    (created,) = server.audit("oidc_client_changed")
    assert created["details"] == {"client_id": "wiki", "change": "created"} and created["success"] == 1
    everything = json.dumps(rows(server.config, "SELECT * FROM audit_logs"), default=str)
    assert secret not in everything and secret not in caplog.text


async def test_a_client_is_changed_by_the_fields_given(server: Admin) -> None:
    made = await server.ok("POST", CLIENTS, 201, json={**WIKI, "skip_consent": True})
    change = {"name": "The wiki", "allowed_emails": ["*@partner.org"]}
    changed = await server.ok("PATCH", f"{CLIENTS}/wiki", json=change)
    assert changed == {
        **{k: v for k, v in made.items() if k != "secret"},
        "name": "The wiki", "allowed_emails": ["*@partner.org"], "updated_at": changed["updated_at"],
    }
    assert await server.ok("GET", f"{CLIENTS}/wiki") == changed
    # The change counts at once: ada is no longer let in, and the page uses the new name.
    url, _ = await authorize_url(server, client_of(server, "wiki", made["secret"]), generate_token(48))
    denied = await server.sign_in_browser((await server.http.get(url)).headers["location"])
    assert denied.status_code == 403 and "may not use The wiki" in denied.text
    assert server.audit("oidc_access_denied")[-1]["details"]["client_id"] == "wiki"
    assert [r["details"]["change"] for r in server.audit("oidc_client_changed")] == ["created", "updated"]


async def test_a_client_brings_the_key_of_the_algorithm_it_asks_for(server: Admin) -> None:
    await server.ok("POST", CLIENTS, 201, json={**WIKI, "id_token_signed_response_alg": "ES256"})
    jwks = (await server.http.get("/.well-known/jwks.json")).json()
    assert [k["alg"] for k in jwks["keys"]] == ["ES256"]
    await server.ok("PATCH", f"{CLIENTS}/wiki", json={"id_token_signed_response_alg": "RS256"})
    jwks = (await server.http.get("/.well-known/jwks.json")).json()
    assert sorted(k["alg"] for k in jwks["keys"]) == ["ES256", "RS256"]


async def test_a_new_secret_works_and_the_old_one_fails_at_once(server: Admin) -> None:
    first = (await server.ok("POST", CLIENTS, 201, json=WIKI))["secret"]
    token, _ = await full_sign_in(server, client_of(server, "wiki", first))
    answer = await server.ok("POST", f"{CLIENTS}/wiki/secret")
    second = answer["secret"]
    assert answer == {"id": "wiki", "secret": second} and second != first and len(second) >= 43

    refresh = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    old = await server.http.post("/oauth2/token", data=refresh, auth=("wiki", first))
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    new = await server.http.post("/oauth2/token", data=refresh, auth=("wiki", second))
    assert new.status_code == 200, new.text
    rotated = server.audit("oidc_client_changed")[-1]
    assert rotated["details"] == {"client_id": "wiki", "change": "secret_rotated"}
    assert first not in json.dumps(rotated) and second not in json.dumps(rotated)


async def test_a_public_client_gets_no_secret(server: Admin) -> None:
    body = {"id": "spa", "public": True, "redirect_uris": [REDIRECT], "skip_consent": True}
    made = await server.ok("POST", CLIENTS, 201, json=body)
    assert made["secret"] is None and made["public"] is True
    (row,) = rows(server.config, "SELECT secret_hash FROM oidc_clients")
    assert row["secret_hash"] is None
    assert_error(await server.admin("POST", f"{CLIENTS}/spa/secret"), 409, "public_client")
    token, _ = await full_sign_in_public(server)
    assert token["token_type"] == "Bearer"


async def full_sign_in_public(server: Admin) -> tuple[dict[str, Any], str]:
    """A public client skips consent: the sign-in lands straight on the redirect URI."""
    client = client_of(server, "spa", None)
    client.scope = "openid email"
    verifier = generate_token(48)
    url, _ = await authorize_url(server, client, verifier)
    asked = await server.http.get(url)
    back = await server.sign_in_browser(asked.headers["location"])
    assert back.status_code == 302, back.text
    code = callback(back.headers["location"])["code"]
    return await client.fetch_token(code, verifier), code


async def test_deleting_a_client_ends_its_tokens_and_the_last_one_turns_the_provider_off(server: Admin) -> None:
    secret = (await server.ok("POST", CLIENTS, 201, json=WIKI))["secret"]
    rp = client_of(server, "wiki", secret)
    token, _ = await full_sign_in(server, rp)
    assert (await rp.get("/oauth2/userinfo")).status_code == 200

    assert await server.ok("DELETE", f"{CLIENTS}/wiki", 204) is None
    assert not await server.provider_on()
    assert (await rp.get("/oauth2/userinfo")).status_code == 404
    assert count(server.config, "oidc_grants", "client_id = 'wiki' AND revoked_reason = 'client_deleted'") == 1
    assert count(server.config, "oidc_consents", "client_id = 'wiki'") == 0
    deleted = server.audit("oidc_client_changed")[-1]
    assert deleted["details"] == {"client_id": "wiki", "change": "deleted", "grants_revoked": 1}
    assert_error(await server.admin("GET", f"{CLIENTS}/wiki"), 404, "not_found")
    assert_error(await server.admin("DELETE", f"{CLIENTS}/wiki"), 404, "not_found")

    # A new client of the same id starts from nothing: the old tokens stay dead.
    again = (await server.ok("POST", CLIENTS, 201, json=WIKI))["secret"]
    assert (await rp.get("/oauth2/userinfo")).status_code == 401
    refresh = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    refused = await server.http.post("/oauth2/token", data=refresh, auth=("wiki", again))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


async def test_logout_apps_and_the_sign_in_pages_see_api_clients(server: Admin) -> None:
    secret = (await server.ok("POST", CLIENTS, 201, json=WIKI))["secret"]
    await full_sign_in(server, client_of(server, "wiki", secret))

    account = await server.http.get("/account")
    assert account.status_code == 200 and "Wiki" in account.text  # "Apps" names the API client
    page = await server.http.post("/", data={"email": EMAIL}, headers=server.origin())
    form_action = page.headers["content-security-policy"].split("form-action")[1].split(";")[0]
    assert page.status_code == 200 and "https://app.example.com" in form_action.split()

    # RP-initiated logout returns to the API client's registered address; back-channel is queued.
    out = await server.http.get("/oauth2/logout", params={
        "client_id": "wiki", "post_logout_redirect_uri": BACK, "state": "s1"})
    assert out.status_code == 200 and "Sign out" in out.text  # signed in, no hint: confirm first
    fields = {"client_id": "wiki", "post_logout_redirect_uri": BACK, "state": "s1", "confirm": "yes"}
    confirmed = await server.http.post("/oauth2/logout", data=fields, headers=server.origin())
    assert confirmed.status_code == 303 and confirmed.headers["location"] == f"{BACK}?state=s1"
    assert count(server.config, "oidc_backchannel_queue", "client_id = 'wiki'") == 1


# --- config clients, conflicts, the token ----------------------------------------------------------


async def test_config_clients_are_listed_and_cannot_be_changed_here(make_config: MakeConfig) -> None:
    config = make_config(FILE_MAIL + ADMIN_SECTION + CONFIG_CLIENT)
    async with Admin.serving(config) as server:
        await server.ok("POST", CLIENTS, 201, json=WIKI)
        listed = (await server.ok("GET", CLIENTS))["clients"]
        assert [(c["id"], c["source"]) for c in listed] == [("grafana", "config"), ("wiki", "api")]
        assert all("secret" not in c and "secret_sha256" not in c for c in listed)
        assert listed[0]["created_at"] is None and isinstance(listed[1]["created_at"], int)
        grafana = f"{CLIENTS}/grafana"
        for method, path, body in (("PATCH", grafana, {"name": "G"}), ("DELETE", grafana, None),
                                   ("POST", f"{grafana}/secret", None), ("POST", CLIENTS, {**WIKI, "id": "grafana"})):
            assert_error(await server.admin(method, path, json=body), 409, "client_from_config")
        assert_error(await server.admin("POST", CLIENTS, json=WIKI), 409, "client_exists")
        assert [r["details"]["change"] for r in server.audit("oidc_client_changed")] == ["created"]


async def test_the_routes_need_the_admin_token(make_config: MakeConfig) -> None:
    calls = [("GET", CLIENTS), ("POST", CLIENTS), ("GET", f"{CLIENTS}/wiki"), ("PATCH", f"{CLIENTS}/wiki"),
             ("DELETE", f"{CLIENTS}/wiki"), ("POST", f"{CLIENTS}/wiki/secret")]
    async with Admin.serving(make_config(FILE_MAIL)) as off:
        for method, path in calls:
            assert_error(await off.http.request(method, path, headers=ADMIN, json=WIKI), 404, "not_found")
    async with Admin.serving(make_config(FILE_MAIL + ADMIN_SECTION)) as server:
        for method, path in calls:
            wrong = {"authorization": "Bearer wrong"}
            assert_error(await server.http.request(method, path, headers=wrong, json=WIKI), 401, "unauthorized")
        assert count(server.config, "oidc_clients") == 0


# --- bad input: 400 naming the field, never a 500 ----------------------------------------------------


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"name": "No id", "redirect_uris": [REDIRECT]}, "id"),
    ({**WIKI, "redirect_uris": []}, "redirect_uris"),
    ({"id": "wiki"}, "redirect_uris"),
    ({**WIKI, "redirect_uris": [REDIRECT + "#x"]}, "redirect_uris"),
    ({**WIKI, "post_logout_redirect_uris": [BACK + "#x"]}, "post_logout_redirect_uris"),
    ({**WIKI, "redirect_uris": ["ftp://app.example.com/cb"]}, "redirect_uris"),
    ({**WIKI, "redirect_uris": REDIRECT}, "redirect_uris"),
    ({**WIKI, "redirect_uris": [[REDIRECT]]}, "redirect_uris"),
    ({**WIKI, "redirect_uris": [REDIRECT] * 101}, "redirect_uris"),
    ({**WIKI, "redirect_uris": [REDIRECT + "?" + "x" * 2000]}, "redirect_uris"),
    ({**WIKI, "id": 5}, "id"),
    ({**WIKI, "id": "has space"}, "id"),
    ({**WIKI, "id": "x" * 65}, "id"),
    ({**WIKI, "id": "passwordless"}, "id"),
    ({**WIKI, "name": None}, "name"),
    ({**WIKI, "name": "a\x00b"}, "name"),
    ({**WIKI, "public": "yes"}, "public"),
    ({**WIKI, "public": True, "require_pkce": False}, "require_pkce"),
    ({**WIKI, "scopes": ["email"]}, "scopes"),
    ({**WIKI, "scopes": ["openid", "profile"]}, "scopes"),
    ({**WIKI, "id_token_signed_response_alg": "HS256"}, "id_token_signed_response_alg"),
    ({**WIKI, "secret": "x" * 40}, "secret"),
    ({**WIKI, "secret_sha256": "0" * 64}, "secret_sha256"),
    ({**WIKI, "colour": "blue"}, "colour"),
    ({**WIKI, "allowed_groups": {"a": 1}}, "allowed_groups"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_a_bad_client_is_400_naming_the_field(server: Admin, body: dict[str, Any], field: str) -> None:
    answer = await server.admin("POST", CLIENTS, json=body)
    assert_error(answer, 400, "invalid_request")
    assert f"'{field}'" in answer.json()["error"]["message"]
    assert count(server.config, "oidc_clients") == 0 and not await server.provider_on()


async def test_hostile_bodies_and_ids_never_reach_a_500(server: Admin) -> None:
    raw = [b'{"id": "wiki", "name": "\\ud800", "redirect_uris": ["https://a.example/cb"]}', b"[]", b"{", b"null",
           b'{"id": "wiki", "redirect_uris": ["https://a.example/cb"], "public": 1e999}']
    for body in raw:
        answer = await server.http.post(CLIENTS, content=body, headers={**ADMIN, "content-type": "application/json"})
        assert_error(answer, 400, "invalid_request")
    assert_error(await server.http.post(CLIENTS, content=b"id=wiki", headers={
        **ADMIN, "content-type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type")
    huge = {**WIKI, "allowed_emails": ["x" * 1000] * 2000}
    assert (await server.admin("POST", CLIENTS, json=huge)).status_code == 413
    for weird in ("%00", "a%00b", "%ED%A0%80", "x" * 300):  # a NUL is refused before routing (400)
        for method in ("GET", "PATCH", "DELETE"):
            answer = await server.admin(method, f"{CLIENTS}/{weird}", json={})
            expected = ("invalid_request", 400) if "%00" in weird else ("not_found", 404)
            assert_error(answer, expected[1], expected[0])
    # The provider's own lookups take the same care with a hostile client_id.
    await server.ok("POST", CLIENTS, 201, json=WIKI)
    odd = await server.http.post("/oauth2/authorize", data={"client_id": "a\x00b", "redirect_uri": REDIRECT})
    assert odd.status_code == 400 and "not known" in odd.text
    bad_auth = await server.http.post("/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                                      auth=("a\x00b", "x"))
    assert bad_auth.status_code == 401 and bad_auth.json()["error"] == "invalid_client"


async def test_a_change_is_checked_like_a_new_client(server: Admin) -> None:
    await server.ok("POST", CLIENTS, 201, json=WIKI)
    for body, field in [({"redirect_uris": []}, "redirect_uris"), ({"id": "other"}, "id"), ({"public": True}, "public"),
                        ({"secret": "x" * 40}, "secret"), ({"scopes": "openid"}, "scopes"), ({"nope": 1}, "nope")]:
        answer = await server.admin("PATCH", f"{CLIENTS}/wiki", json=body)
        assert_error(answer, 400, "invalid_request")
        assert f"'{field}'" in answer.json()["error"]["message"]
    assert (await server.ok("GET", f"{CLIENTS}/wiki"))["redirect_uris"] == [REDIRECT]


async def test_production_refuses_plain_http_off_loopback(make_config: MakeConfig) -> None:
    production = (
        'environment = "production"\n[server]\npublic_url = "https://auth.example.com"\n'
        f'[jwt]\nsecret = "{SHARED_SECRET}"\n' + FILE_MAIL + ADMIN_SECTION
    )
    async with Admin.serving(make_config(production)) as server:
        plain = await server.admin("POST", CLIENTS, json={**WIKI, "redirect_uris": ["http://app.example.com/cb"]})
        assert_error(plain, 400, "invalid_request")
        message = plain.json()["error"]["message"]
        assert "'redirect_uris'" in message and "plain http" in message
        loopback = {**WIKI, "redirect_uris": ["http://127.0.0.1:8080/cb"], "post_logout_redirect_uris": []}
        await server.ok("POST", CLIENTS, 201, json=loopback)


# --- several servers on one PostgreSQL database -------------------------------------------------------


async def test_a_client_made_on_one_server_works_on_another_and_its_deletion_everywhere(
    make_config: MakeConfig, tmp_path: Path,
) -> None:
    shared = (
        f'[database]\npath = "{tmp_path / "auth.db"}"\nurl = "{cluster().create_database()}"\n'
        f'[jwt]\nsecret = "{SHARED_SECRET}"\n'
    )
    config = make_config(FILE_MAIL + NO_RATE_LIMITS + ADMIN_SECTION + shared)
    async with Admin.serving(config) as a, Admin.serving(config) as b:
        assert not await b.provider_on()
        secret = (await a.ok("POST", CLIENTS, 201, json=WIKI))["secret"]
        assert await b.provider_on()  # no restart, no cache to wait for
        # B publishes the key A made (told by NOTIFY) before anything is signed with it.
        await until(lambda: b.deps().sessions.signer.jwks()["keys"], "B to publish the RSA key")

        token, _ = await full_sign_in(b, client_of(b, "wiki", secret))
        keys = KeySet.import_key_set((await b.http.get("/.well-known/jwks.json")).json())
        assert jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims["aud"] == "wiki"

        fresh = (await a.ok("POST", f"{CLIENTS}/wiki/secret"))["secret"]
        refresh = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
        old = await b.http.post("/oauth2/token", data=refresh, auth=("wiki", secret))
        assert old.status_code == 401 and old.json()["error"] == "invalid_client"
        assert (await b.http.post("/oauth2/token", data=refresh, auth=("wiki", fresh))).status_code == 200

        await a.ok("DELETE", f"{CLIENTS}/wiki", 204)
        assert not await b.provider_on()
        assert count(config, "signing_keys", "algorithm = 'RS256'") == 1  # one key for both servers
