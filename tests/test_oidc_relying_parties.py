"""Our OpenID Connect provider against relying parties nobody here wrote (OIDC.md; ENVIRONMENT.md,
"Independent OpenID Connect relying parties"):

- npm's openid-client 6 (panva, OpenID Certified) runs the whole flow: discovery, an authorization
  request with PKCE S256, state and nonce, the sign-in through our hosted pages in headless Chromium
  (emailed code typed into the page, consent Allow), the code exchange with ID token validation,
  userinfo, refresh, revocation and RP-initiated logout; a public client does the same with PKCE
  alone; a second request rides on the browser's session and remembered consent (prompt=none).
- Apache httpd with Debian's mod_auth_openidc protects a page: Chromium opens it, is sent to our
  sign-in, signs in by code, consents, lands on the page, which shows the email; logout goes through
  /oauth2/logout; signing out on /account ends Apache's session too (back-channel logout).

The real `passwordless serve` (console email) has one client per relying party in its
configuration; the relying parties are in tests/support/relying_parties.py, installed by
`scripts/setup test`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import Browser
from tests.support.live import Email, LiveServer, serving
from tests.support.relying_parties import ApacheRP, Landing, NodeRP, RelyingPartyError
from tests.support.waiting import wait_until

SECRET = "relying-party-test-secret-0123456789abcdef"  # 32+ characters, as production wants
NODE_APP = "node-app"  # confidential: client_secret_basic or _post, consent, refresh tokens
NODE_SPA = "node-spa"  # public: PKCE alone, first-party (no consent page)
APACHE = "apache"
SCOPE = "openid email offline_access"
Steps = dict[str, dict[str, Any]]


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def landing() -> Iterator[Landing]:
    """What the Node relying party's web server would be: the page its redirect URIs lead to."""
    with Landing() as page:
        yield page


@pytest.fixture(scope="module")
def apache_rp() -> Iterator[ApacheRP]:
    """Apache's URLs (for the client's registration); started by `apache` once the server runs."""
    with ApacheRP(APACHE, SECRET, scope="openid email") as rp:
        yield rp


def clients(landing: Landing, apache: ApacheRP) -> str:
    """The three clients, registered exactly as each relying party sends its URIs."""
    return f"""
[rate_limit]
magic_link_per_ip = "1000/1m"
verify_per_ip = "1000/1m"

[[oidc.clients]]
id = "{NODE_APP}"
name = "Node App"
secret = "{SECRET}"
redirect_uris = ["{landing.url('/callback')}"]
post_logout_redirect_uris = ["{landing.url('/signed-out')}"]
scopes = ["openid", "email", "offline_access"]

[[oidc.clients]]
id = "{NODE_SPA}"
name = "Node SPA"
public = true
skip_consent = true
redirect_uris = ["{landing.url('/spa/callback')}"]
scopes = ["openid", "email"]

[[oidc.clients]]
id = "{APACHE}"
name = "Apache Intranet"
secret = "{SECRET}"
redirect_uris = ["{apache.redirect_uri}"]
post_logout_redirect_uris = ["{apache.signed_out_url}"]
backchannel_logout_uri = "{apache.backchannel_logout_uri}"
scopes = ["openid", "email"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, landing: Landing, apache_rp: ApacheRP) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("oidc-rp"), clients(landing, apache_rp)) as started:
        yield started


@pytest.fixture(scope="module")
def apache(server: LiveServer, apache_rp: ApacheRP) -> ApacheRP:
    apache_rp.start(server.url("/.well-known/openid-configuration"))
    return apache_rp


# ------------------------------------------------------------------------------------- helpers


def email_to(server: LiveServer, address: str) -> Email:
    """The next email printed for `address` (skipping any left over for others)."""
    while True:
        mail = server.next_email()
        if mail.to == address:
            return mail


def sign_in_by_code(server: LiveServer, page: Page, address: str) -> None:
    """On our hosted sign-in page (where an authorization request without a session leads): the
    email, then the emailed code typed into the page."""
    assert page.url.startswith(server.public_url), page.url
    field = page.get_by_label("Email address")
    expect(field).to_be_visible()
    if field.input_value() != address:
        field.fill(address)
    page.get_by_role("button", name="Email me a sign-in link", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    page.get_by_label("Code from the email").fill(email_to(server, address).code)
    page.get_by_role("button", name="Sign in", exact=True).click()


def allow(server: LiveServer, page: Page, client_name: str) -> None:
    """The consent page names the client and what it will receive; Allow."""
    button = page.get_by_role("button", name=re.compile(r"^Allow\b"))
    expect(button).to_be_visible()
    assert page.url.startswith(server.public_url), page.url
    expect(page.locator("body")).to_contain_text(client_name)
    expect(page.locator("body")).to_contain_text(re.compile("email", re.I))
    button.click()


def arrive(page: Page, url: str) -> str:
    """Waits until the browser is at `url` (query aside); the full URL it reached."""
    page.wait_for_url(re.compile("^" + re.escape(url) + r"(\?|$)"))
    return page.url


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def by_step(steps: list[dict[str, Any]]) -> Steps:
    return {found["step"]: found for found in steps}


def audience(claims: dict[str, Any]) -> list[str]:
    aud = claims["aud"]
    return [aud] if isinstance(aud, str) else list(aud)


def signed_in_user(server: LiveServer, browser: Browser) -> tuple[int, Any]:
    """/auth/me from a page of ours, with the browser's passwordless session cookie."""
    browser.page.goto(server.url("/health"))
    return browser.fetch("/auth/me")


def node_app(server: LiveServer, landing: Landing, **options: Any) -> NodeRP:
    return NodeRP(
        server.public_url, NODE_APP, landing.url("/callback"), SCOPE, secret=SECRET,
        post_logout_redirect_uri=landing.url("/signed-out"), **options,
    )


# ------------------------------------------------------------------------------- openid-client


def test_openid_client_runs_the_whole_flow_through_the_hosted_pages(
    server: LiveServer, landing: Landing, browser: Browser
) -> None:
    page, address = browser.page, "node.user@example.com"
    with node_app(server, landing, extra={"login_hint": address}) as rp:
        metadata = rp.step("discovery")["metadata"]
        assert metadata["issuer"] == server.public_url
        for name, path in [
            ("authorization_endpoint", "/oauth2/authorize"), ("token_endpoint", "/oauth2/token"),
            ("userinfo_endpoint", "/oauth2/userinfo"), ("revocation_endpoint", "/oauth2/revoke"),
            ("introspection_endpoint", "/oauth2/introspect"), ("end_session_endpoint", "/oauth2/logout"),
            ("jwks_uri", "/.well-known/jwks.json"),
        ]:
            assert metadata[name] == server.url(path), (name, metadata)
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert metadata["authorization_response_iss_parameter_supported"] is True
        assert metadata["id_token_signing_alg_values_supported"][0] == "RS256"

        # No session: the authorization request leads to our sign-in page, the email filled in
        page.goto(rp.authorization_url())
        expect(page.get_by_label("Email address")).to_have_value(address)
        sign_in_by_code(server, page, address)
        allow(server, page, "Node App")
        callback = arrive(page, landing.url("/callback"))
        answer = query(callback)
        assert answer["iss"] == server.public_url and answer["code"], callback  # RFC 9207
        assert answer["state"] == rp.step("authorize")["state"]

        steps = by_step(rp.finish(landing.last("/callback")))

    token = steps["token"]
    claims = token["claims"]
    assert claims["iss"] == server.public_url and audience(claims) == [NODE_APP], claims
    assert (claims["email"], claims["email_verified"]) == (address, True), claims
    assert claims["nonce"] == steps["authorize"]["nonce"]
    assert claims["amr"] == ["otp"], claims  # signed in by the emailed code
    assert claims["sid"] and isinstance(claims["auth_time"], int), claims
    assert token["id_token_header"]["alg"] == "RS256"
    status, jwks = server.get("/.well-known/jwks.json")
    assert status == 200
    assert token["id_token_header"]["kid"] in {key["kid"] for key in jwks["keys"]}
    assert token["access_token_header"]["typ"].lower() in ("at+jwt", "application/at+jwt")  # RFC 9068
    assert token["token_type"].lower() == "bearer" and token["has_refresh_token"] is True, token
    assert set(token["scope"].split()) == set(SCOPE.split()), token

    assert steps["userinfo"]["userinfo"]["sub"] == claims["sub"]
    assert steps["userinfo"]["userinfo"]["email"] == address
    assert steps["refresh"]["refreshed"] is True and steps["refresh"]["rotated"] is True, steps["refresh"]
    assert steps["revoke"] == {"step": "revoke", "revoked": "refresh_token", "active_before": True, "active_after": False}

    # The ID token's subject is the passwordless user the browser signed in as
    status, me = signed_in_user(server, browser)
    assert status == 200 and (me["id"], me["email"]) == (claims["sub"], address), me

    # A second request rides on the browser's session and the remembered consent: no page at
    # all (prompt=none would be answered login_required or consent_required otherwise); the
    # client authenticates the other documented way this time.
    with node_app(server, landing, extra={"prompt": "none"}, auth_method="client_secret_post") as again:
        page.goto(again.authorization_url())
        arrive(page, landing.url("/callback"))
        second = by_step(again.finish(landing.last("/callback")))
    assert second["token"]["claims"]["sub"] == claims["sub"]
    assert second["token"]["claims"]["sid"] == claims["sid"]
    assert second["token"]["claims"]["auth_time"] == claims["auth_time"]  # the same sign-in

    # RP-initiated logout with the id_token_hint: back to the registered URI with the state, and
    # the browser's passwordless session is over
    page.goto(steps["logout"]["url"])
    signed_out = arrive(page, landing.url("/signed-out"))
    assert query(signed_out).get("state") == steps["logout"]["state"], signed_out
    assert signed_in_user(server, browser)[0] == 401
    with node_app(server, landing, extra={"prompt": "none"}) as after:
        page.goto(after.authorization_url())
        arrive(page, landing.url("/callback"))
        assert query(page.url).get("error") == "login_required", page.url
        with pytest.raises(RelyingPartyError, match="login_required"):
            after.finish(landing.last("/callback"))


def test_a_public_client_signs_in_with_pkce_alone(server: LiveServer, landing: Landing, browser: Browser) -> None:
    page, address = browser.page, "spa.user@example.com"
    with NodeRP(server.public_url, NODE_SPA, landing.url("/spa/callback"), "openid email") as rp:
        assert "none" in rp.step("discovery")["metadata"]["token_endpoint_auth_methods_supported"]
        page.goto(rp.authorization_url())
        sign_in_by_code(server, page, address)
        arrive(page, landing.url("/spa/callback"))  # skip_consent: no consent page
        steps = by_step(rp.finish(landing.last("/spa/callback")))
    claims = steps["token"]["claims"]
    assert audience(claims) == [NODE_SPA] and claims["email"] == address, claims
    assert steps["token"]["has_refresh_token"] is False  # no offline_access asked (nor allowed)
    assert steps["userinfo"]["userinfo"]["email"] == address
    assert steps["refresh"]["refreshed"] is False
    assert steps["revoke"]["revoked"] == "access_token"  # no introspection: a public client may not


def test_an_unregistered_redirect_uri_is_never_redirected_to(
    server: LiveServer, landing: Landing, browser: Browser
) -> None:
    with NodeRP(server.public_url, NODE_APP, landing.url("/elsewhere"), SCOPE, secret=SECRET) as rp:
        answer = browser.page.goto(rp.authorization_url())
        assert answer is not None and answer.status == 400
        assert browser.page.url.startswith(server.public_url)
        assert not [url for url in landing.urls if url.startswith(landing.url("/elsewhere"))]


# -------------------------------------------------------------------------- Apache mod_auth_openidc


def sign_in_to_apache(server: LiveServer, apache: ApacheRP, page: Page, address: str) -> None:
    page.goto(apache.protected_url)
    sign_in_by_code(server, page, address)
    allow(server, page, "Apache Intranet")
    arrive(page, apache.protected_url)
    expect(page.locator("#email")).to_have_text(f"Signed in as {address}.")


def apache_status(browser: Browser, apache: ApacheRP) -> int:
    """What Apache answers the browser (its cookies) for the protected page, redirects not followed."""
    answer = browser.page.request.get(apache.protected_url, max_redirects=0, headers={"accept": "text/html"})
    return answer.status


def test_apache_protects_a_page_signed_into_through_passwordless(
    server: LiveServer, apache: ApacheRP, browser: Browser
) -> None:
    page, address = browser.page, "apache.user@example.com"
    sign_in_to_apache(server, apache, page, address)
    expect(page.locator("#user")).to_have_text(f"REMOTE_USER is {address}.")
    assert apache_status(browser, apache) == 200, apache.log()

    # mod_auth_openidc's logout: through our end_session_endpoint and back to its signed-out page
    visited: list[str] = []
    page.on("request", lambda request: visited.append(request.url))
    page.goto(apache.logout_url())
    arrive(page, apache.signed_out_url)
    assert [url for url in visited if url.startswith(server.url("/oauth2/logout?"))], visited
    assert signed_in_user(server, browser)[0] == 401

    # both sessions are over: the protected page sends the browser to our sign-in again
    page.goto(apache.protected_url)
    expect(page.get_by_label("Email address")).to_be_visible()
    assert page.url.startswith(server.public_url), page.url


def test_signing_out_of_passwordless_ends_the_apache_session(
    server: LiveServer, apache: ApacheRP, browser: Browser
) -> None:
    page, address = browser.page, "backchannel.user@example.com"
    sign_in_to_apache(server, apache, page, address)
    assert apache_status(browser, apache) == 200, apache.log()

    page.goto(server.url("/account"))
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(server.url("/"))
    assert signed_in_user(server, browser)[0] == 401

    # the back-channel logout token (queued, so not at once) ends Apache's session by its sid
    wait_until(lambda: apache_status(browser, apache) != 200, "Apache to end its session", timeout=20, every=0.2)
    page.goto(apache.protected_url)
    expect(page.get_by_label("Email address")).to_be_visible()
    assert page.url.startswith(server.public_url), page.url
