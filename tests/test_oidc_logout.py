"""Logout at the OpenID Connect provider (OIDC.md, "Sessions and logout"): RP-initiated logout at
/oauth2/logout (id_token_hint, post_logout_redirect_uri by exact match, state, a confirmation page
without a valid hint, an expired hint still naming the client), and back-channel logout: every
way a browser session ends queues a logout token for each client with a backchannel_logout_uri
that received tokens in it, which the worker POSTs (retried, then dead)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import MakeConfig
from tests.support.app import FakeClock
from tests.support.signin import NO_RATE_LIMITS, count, rows
from tests.support.waiting import until
from tests.test_oidc import REDIRECT, SECRET, Server, authorize_url, callback, full_sign_in, oauth
from tests.test_webhooks import Receiver, receiving

pytestmark = pytest.mark.anyio

ADMIN_TOKEN = "admin-token-for-the-logout-tests-0123456789"
SIGNED_OUT = "https://app.example.com/signed-out"
EMAIL_SETTINGS = '[email]\ntransport = "file"\nmax_attempts = 3\nretry_initial = "100ms"\nretry_max = "200ms"\n'
EVENT = "http://schemas.openid.net/event/backchannel-logout"


def clients(backchannel: str = "") -> str:
    return f'''
[admin]
token = "{ADMIN_TOKEN}"

[[oidc.clients]]
id = "grafana"
name = "Grafana"
secret = "{SECRET}"
redirect_uris = ["{REDIRECT}"]
post_logout_redirect_uris = ["{SIGNED_OUT}", "{SIGNED_OUT}?from=grafana"]
backchannel_logout_uri = "{backchannel}"

[[oidc.clients]]
id = "spa"
public = true
redirect_uris = ["{REDIRECT}"]
post_logout_redirect_uris = ["https://spa.example.com/bye"]
scopes = ["openid", "email"]
skip_consent = true
'''


@pytest.fixture
async def server(make_config: MakeConfig) -> AsyncIterator[Server]:
    async with Server.serving(make_config(EMAIL_SETTINGS + NO_RATE_LIMITS + clients())) as s:
        yield s


async def signed_in(server: Server) -> dict[str, Any]:
    """A sign-in on the hosted page and grafana's tokens (consent asked for the first time only)."""
    async with oauth(server) as client:
        verifier = generate_token(48)
        url, _ = await authorize_url(server, client, verifier)
        back = await server.sign_in_browser((await server.http.get(url)).headers["location"])
        answer = await server.consent(back) if back.status_code == 200 else back
        return await client.fetch_token(callback(answer.headers["location"])["code"], verifier)


async def session_is_live(server: Server) -> bool:
    return (await server.http.get("/account")).status_code == 200


def admin() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_TOKEN}"}


# ------------------------------------------------------------------------ RP-initiated logout


async def test_a_valid_hint_signs_out_and_returns_with_the_state(server: Server) -> None:
    token = await signed_in(server)
    assert await session_is_live(server)
    answer = await server.http.get("/oauth2/logout", params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": f"{SIGNED_OUT}?from=grafana", "state": "s 1",
    })
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == f"{SIGNED_OUT}?from=grafana&state=s+1"
    assert "pl_session=" in answer.headers["set-cookie"]  # the cookie is cleared
    assert not await session_is_live(server)
    info = await server.http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {token['access_token']}"})
    assert info.status_code == 401  # the session's grants ended with it
    [event] = server.audit("oidc_logout")
    assert event["details"]["client_id"] == "grafana" and event["user_id"]


async def test_an_unregistered_post_logout_redirect_uri_is_never_followed(server: Server) -> None:
    token = await signed_in(server)
    for uri in ("https://evil.example/", f"{SIGNED_OUT}/", "https://spa.example.com/bye"):  # spa's, not grafana's
        answer = await server.http.get("/oauth2/logout", params={"id_token_hint": token["id_token"],
                                                                   "post_logout_redirect_uri": uri})
        assert answer.status_code == 200 and "location" not in answer.headers
        assert "You are signed out" in answer.text and "Grafana" in answer.text
    assert not await session_is_live(server)


async def test_without_a_hint_the_person_confirms_first(server: Server) -> None:
    await signed_in(server)
    params = {"client_id": "grafana", "post_logout_redirect_uri": SIGNED_OUT, "state": "xyz"}
    asked = await server.http.get("/oauth2/logout", params=params)
    assert asked.status_code == 200 and "Sign out?" in asked.text and "Grafana" in asked.text
    assert await session_is_live(server)  # nothing ended yet
    fields = {**params, "confirm": "yes"}
    refused = await server.http.post("/oauth2/logout", data=fields, headers={"origin": "https://evil.example"})
    assert refused.status_code == 403 and await session_is_live(server)
    done = await server.http.post("/oauth2/logout", data=fields, headers=server.origin())
    assert done.status_code == 303 and done.headers["location"] == f"{SIGNED_OUT}?state=xyz"
    assert not await session_is_live(server)


async def test_a_hint_that_is_not_ours_asks_too(server: Server) -> None:
    token = await signed_in(server)
    header, claims, _ = token["id_token"].split(".")
    forged = f"{header}.{claims}.{'A' * 342}"
    asked = await server.http.get("/oauth2/logout", params={"id_token_hint": forged})
    assert asked.status_code == 200 and "Sign out?" in asked.text
    assert await session_is_live(server)


async def test_a_hint_for_another_client_than_client_id_is_refused(server: Server) -> None:
    token = await signed_in(server)
    answer = await server.http.get("/oauth2/logout", params={"id_token_hint": token["id_token"], "client_id": "spa"})
    assert answer.status_code == 400 and "location" not in answer.headers
    assert await session_is_live(server)


async def test_without_a_session_it_only_returns(server: Server) -> None:
    answer = await server.http.get("/oauth2/logout", params={
        "client_id": "spa", "post_logout_redirect_uri": "https://spa.example.com/bye", "state": "q"})
    assert answer.status_code == 302 and answer.headers["location"] == "https://spa.example.com/bye?state=q"
    plain = await server.http.get("/oauth2/logout")
    assert plain.status_code == 200 and "You are signed out" in plain.text
    assert "content-security-policy" in plain.headers


async def test_an_expired_hint_still_names_the_client(make_config: MakeConfig) -> None:
    clock = FakeClock()
    async with Server.serving(make_config(EMAIL_SETTINGS + NO_RATE_LIMITS + clients()), clock) as server:
        token = await signed_in(server)
        clock.advance(3 * 3600)  # the ID token lived an hour
        answer = await server.http.get("/oauth2/logout", params={
            "id_token_hint": token["id_token"], "post_logout_redirect_uri": SIGNED_OUT})
        assert answer.status_code == 302 and answer.headers["location"] == SIGNED_OUT
        assert not await session_is_live(server)


# ------------------------------------------------------------------------- back-channel logout


def logout_tokens(receiver: Receiver) -> list[str]:
    return [parse_qs(hit.body.decode())["logout_token"][0] for hit in receiver.hits if hit.method == "POST"]


async def verified(server: Server, logout_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = KeySet.import_key_set((await server.http.get("/.well-known/jwks.json")).json())
    decoded = jwt.decode(logout_token, keys, algorithms=["RS256"])
    return dict(decoded.header), dict(decoded.claims)


async def test_signing_out_sends_each_client_a_logout_token(make_config: MakeConfig) -> None:
    with receiving(Receiver()) as receiver:
        config = make_config(EMAIL_SETTINGS + NO_RATE_LIMITS + clients(receiver.url("/backchannel")))
        async with Server.serving(config, time.time) as server:
            token = await signed_in(server)
            keys = KeySet.import_key_set((await server.http.get("/.well-known/jwks.json")).json())
            id_claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
            out = await server.http.post("/account/sign-out", headers=server.origin())
            assert out.status_code == 303
            await until(lambda: logout_tokens(receiver), "a logout token")
            [hit] = receiver.hits
            assert hit.path == "/backchannel" and hit.headers["content-type"] == "application/x-www-form-urlencoded"
            header, claims = await verified(server, logout_tokens(receiver)[0])
            assert header["typ"] == "logout+jwt" and header["alg"] == "RS256" and header["kid"]
            assert claims["iss"] == config.server.public_url and claims["aud"] == "grafana"
            assert (claims["sub"], claims["sid"]) == (id_claims["sub"], id_claims["sid"])
            assert claims["events"] == {EVENT: {}} and "nonce" not in claims and claims["jti"]
            assert abs(claims["iat"] - time.time()) < 60
            await until(lambda: count(config, "oidc_backchannel_queue", "status = 'sent'") == 1, "the row sent")
            sent = server.deps().metrics.oidc_backchannel_deliveries.labels("sent")
            await until(lambda: sent._value.get() == 1, "sent counted")
            # its grant ended with the session
            info = await server.http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {token['access_token']}"})
            assert info.status_code == 401


async def test_rp_initiated_logout_and_admin_actions_send_logout_tokens(make_config: MakeConfig) -> None:
    with receiving(Receiver()) as receiver:
        config = make_config(EMAIL_SETTINGS + NO_RATE_LIMITS + clients(receiver.url("/backchannel")))
        async with Server.serving(config, time.time) as server:
            token = await signed_in(server)
            await server.http.get("/oauth2/logout", params={"id_token_hint": token["id_token"]})
            await until(lambda: len(logout_tokens(receiver)) == 1, "one logout token (RP-initiated)")

            await signed_in(server)
            [user] = rows(config, "SELECT id FROM users")
            revoked = await server.http.delete(f"/admin/users/{user['id']}/sessions", headers=admin())
            assert revoked.status_code == 200 and revoked.json() == {"revoked": 1}
            await until(lambda: len(logout_tokens(receiver)) == 2, "a second (admin: sessions)")

            second = await signed_in(server)
            deleted = await server.http.delete(f"/admin/users/{user['id']}", headers=admin())
            assert deleted.status_code == 204
            await until(lambda: len(logout_tokens(receiver)) == 3, "a third (admin: the user deleted)")
            keys = KeySet.import_key_set((await server.http.get("/.well-known/jwks.json")).json())
            last_sid = jwt.decode(second["id_token"], keys, algorithms=["RS256"]).claims["sid"]
            assert (await verified(server, logout_tokens(receiver)[2]))[1]["sid"] == last_sid
            sids = {(await verified(server, t))[1]["sid"] for t in logout_tokens(receiver)}
            assert len(sids) == 3  # one per session, never one twice


async def test_refresh_token_reuse_ends_the_session_and_tells_the_client(make_config: MakeConfig) -> None:
    with receiving(Receiver()) as receiver:
        config = make_config(EMAIL_SETTINGS + NO_RATE_LIMITS + clients(receiver.url("/backchannel")))
        async with Server.serving(config, time.time) as server:
            async with oauth(server) as client:
                token, _ = await full_sign_in(server, client)
                await client.refresh_token(token["refresh_token"])
            reused = await server.http.post("/oauth2/token", data={
                "grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, auth=("grafana", SECRET))
            assert reused.status_code == 400
            assert not await session_is_live(server)
            await until(lambda: len(logout_tokens(receiver)) == 1, "a logout token")


async def test_a_client_without_tokens_in_the_session_is_not_told(make_config: MakeConfig) -> None:
    with receiving(Receiver()) as receiver:
        config = make_config(EMAIL_SETTINGS + NO_RATE_LIMITS + clients(receiver.url("/backchannel")))
        async with Server.serving(config, time.time) as server:
            async with oauth(server, "spa", None) as client:  # spa has no backchannel_logout_uri
                client.scope = "openid email"
                url, _ = await authorize_url(server, client, "v" * 48)
                answer = await server.sign_in_browser((await server.http.get(url)).headers["location"])
                assert "code" in callback(answer.headers["location"])
            assert (await server.http.post("/account/sign-out", headers=server.origin())).status_code == 303
            assert count(config, "oidc_backchannel_queue") == 0  # queued in the same unit, or never


async def test_a_failing_receiver_is_retried_then_dead(make_config: MakeConfig) -> None:
    with receiving(Receiver(script=[500, 503], default=500)) as receiver:
        config = make_config(EMAIL_SETTINGS + NO_RATE_LIMITS + clients(receiver.url("/backchannel")))
        async with Server.serving(config, time.time) as server:
            await signed_in(server)
            await server.http.post("/account/sign-out", headers=server.origin())
            await until(lambda: count(config, "oidc_backchannel_queue", "status = 'dead'") == 1, "dead", timeout=15)
            tokens = logout_tokens(receiver)
            assert len(tokens) == 3  # email.max_attempts
            jtis = {(await verified(server, t))[1]["jti"] for t in tokens}
            assert len(jtis) == 1  # the same logout token, signed afresh
            metrics = server.deps().metrics.oidc_backchannel_deliveries
            await until(lambda: metrics.labels("dead")._value.get() == 1, "dead counted")  # counted after the commit
            assert metrics.labels("retry")._value.get() == 2
            assert server.audit("oidc_backchannel_dead")


# ------------------------------------------------------------------------------ groups (admin)


async def test_admin_sets_groups_that_the_groups_claim_carries(server: Server) -> None:
    await signed_in(server)
    [user] = rows(server.config, "SELECT id FROM users")
    put = await server.http.put(f"/admin/users/{user['id']}/groups", json={"groups": ["ops", "grafana-users", "ops"]},
                                headers=admin())
    assert put.status_code == 200 and put.json() == {"groups": ["grafana-users", "ops"]}
    detail = await server.http.get(f"/admin/users/{user['id']}", headers=admin())
    assert detail.json()["groups"] == ["grafana-users", "ops"]
    async with oauth(server) as client:
        url, _ = await authorize_url(server, client, "v" * 48, prompt="none")
        code = callback((await server.http.get(url)).headers["location"])["code"]
        token = await client.fetch_token(code, "v" * 48)
        assert (await client.get("/oauth2/userinfo")).json()["groups"] == ["grafana-users", "ops"]
    assert token["id_token"]
    for bad in ({"groups": "ops"}, {"groups": [""]}, {"groups": ["a b"]}, {"groups": [1]}, {}, {"groups": [], "x": 1}):
        answer = await server.http.put(f"/admin/users/{user['id']}/groups", json=bad, headers=admin())
        assert answer.status_code == 400, bad
    missing = await server.http.put("/admin/users/nobody/groups", json={"groups": []}, headers=admin())
    assert missing.status_code == 404
    cleared = await server.http.put(f"/admin/users/{user['id']}/groups", json={"groups": []}, headers=admin())
    assert cleared.json() == {"groups": []} and server.audit("user_groups_changed")


# ------------------------------------------------------------------------- Apps on /account


async def test_apps_on_the_account_page_list_and_revoke_consents(server: Server) -> None:
    token = await signed_in(server)
    page = await server.http.get("/account")
    assert page.status_code == 200 and "<h2>Apps</h2>" in page.text and "Grafana" in page.text
    assert "/account/apps/grafana/revoke" in page.text
    refused = await server.http.post("/account/apps/grafana/revoke", headers={"origin": "https://evil.example"})
    assert refused.status_code == 403
    revoked = await server.http.post("/account/apps/grafana/revoke", headers=server.origin())
    assert revoked.status_code == 303 and revoked.headers["location"] == "/account?done=app-revoked"
    assert "No app has been allowed" in (await server.http.get("/account")).text
    # that client's refresh token is revoked; the browser session is not
    refresh = await server.http.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, auth=("grafana", SECRET))
    assert refresh.status_code == 400 and await session_is_live(server)
    [event] = server.audit("oidc_consent_revoked")
    assert event["details"] == {"client_id": "grafana"} and event["user_id"]
    # the next authorization asks again
    async with oauth(server) as client:
        url, _ = await authorize_url(server, client, "v" * 48)
        assert "Allow" in (await server.http.get(url)).text
    unknown = await server.http.post("/account/apps/grafana/revoke", headers=server.origin())
    assert unknown.headers["location"] == "/account?done="
