"""Passkeys in a real browser: headless Chromium with a CDP virtual authenticator against the real
`passwordless serve` on http://localhost:PORT, using the hosted script /static/passkeys.js
(API.md "Sign in by email", "Passkeys (WebAuthn)", "Hosted pages"; ENVIRONMENT.md "Headless
Chromium passkey tests").

The first test signs in by the emailed link: the confirmation page's button posts a form, which a
browser sends with `Origin: null` because our pages say `Referrer-Policy: no-referrer`. The second
registers a passkey through passkeys.js and signs in with it three ways (usernameless, by email,
conditional mediation); it gets its first session by sending the confirmation page's form from
script, so it does not depend on the button. A screenshot of the confirmation page is saved to
test-artifacts/ (git-ignored)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tests.support.browser import Browser
from tests.support.engine import connection_of
from tests.support.live import Email, LiveServer

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
EMAIL = "browser.user@example.com"
COOKIE = "pl_session"  # http public_url: no __Host- prefix


def claims_of(jwt: str) -> dict[str, Any]:
    """The JWT's payload, unverified (the server verifies; this only reads what it says)."""
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def assert_browser_signed_in(browser: Browser, user_id: str, passkeys: int) -> dict[str, Any]:
    """The browser holds a working session cookie: /auth/me answers for the user."""
    cookie = browser.cookie(COOKIE)
    assert cookie is not None, browser.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"], cookie["path"]) == (True, "Lax", False, "/")
    assert cookie["domain"] == "localhost"
    status, me = browser.fetch("/auth/me")
    assert status == 200, me
    assert (me["id"], me["email"], me["passkeys"]) == (user_id, EMAIL, passkeys)
    return cookie


def assert_passkey_sign_in(tokens: dict[str, Any], user_id: str, public_url: str) -> dict[str, Any]:
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"], tokens
    assert tokens["user"] == {"id": user_id, "email": EMAIL}
    claims = claims_of(tokens["access_token"])
    assert (claims["sub"], claims["email"], claims["iss"]) == (user_id, EMAIL, public_url)
    assert claims["amr"] == ["hwk", "user"]  # the virtual authenticator verifies its user
    return claims


def ask_for_link(live_server: LiveServer, browser: Browser) -> Email:
    """From a page of our origin, ask for a sign-in email; the email the server printed."""
    assert browser.page.goto(live_server.url("/health")) is not None
    status, sent = browser.fetch("/auth/magic-link", "POST", {"email": " Browser.User@Example.com "})
    assert (status, sent) == (202, {"status": "sent"})
    mail = live_server.next_email()
    assert mail.to == EMAIL
    assert mail.link.startswith(live_server.url("/auth/magic-link/verify?token="))
    return mail


def open_confirmation_page(browser: Browser, mail: Email) -> None:
    confirmation = browser.page.goto(mail.link)
    assert confirmation is not None and confirmation.status == 200
    assert "default-src 'self'" in confirmation.headers["content-security-policy"]
    assert browser.page.title().startswith("Sign in")
    assert browser.page.get_by_role("heading", level=1).inner_text() == "Sign in"
    assert browser.cookie(COOKIE) is None


def test_magic_link_confirmation_page_signs_the_browser_in(live_server: LiveServer, browser: Browser) -> None:
    page = browser.page
    mail = ask_for_link(live_server, browser)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    open_confirmation_page(browser, mail)
    # styled (the stylesheet loaded under the page's CSP), in the light scheme, with nothing refused
    assert browser.run("""() => matchMedia("(prefers-color-scheme: light)").matches && [...document.styleSheets]
        .some((sheet) => sheet.href && sheet.href.endsWith("/static/style.css") && sheet.cssRules.length > 0)""")
    assert [line for line in console if line.startswith("error")] == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "magic-link-confirmation.png"), full_page=True)

    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Sign in").click()
    landed = navigation.value
    # The form's POST answers 303 to /account (while the hosted account page does not exist, it
    # answers 404) and sets the session cookie.
    assert landed is not None
    assert page.url == live_server.url("/account"), (
        f"the button's POST answered {landed.status} {landed.text()[:300]} "
        f"(the request carried Origin: {landed.request.header_value('origin')!r})"
    )
    assert landed.status in (200, 404)
    assert landed.request.redirected_from is not None
    assert landed.request.redirected_from.method == "POST"
    status, me = browser.fetch("/auth/me")
    assert status == 200, me
    assert_browser_signed_in(browser, me["id"], passkeys=0)

    # the link is spent: opening it again says so
    again = page.goto(mail.link)
    assert again is not None and again.status == 401
    assert page.get_by_role("button", name="Sign in").count() == 0


def test_passkey_registered_and_used_in_headless_chromium(live_server: LiveServer, browser: Browser) -> None:
    page = browser.page

    # --- 1. sign in by email: the confirmation page's own form, sent by script as a same-origin
    # request (the button itself is tested above); the browser then holds the session cookie
    mail = ask_for_link(live_server, browser)
    open_confirmation_page(browser, mail)
    kind, status = browser.run("""async () => {
        const form = document.querySelector("form");
        const answer = await fetch(form.action, {
            method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin",
            redirect: "manual",
        });
        return [answer.type, answer.status];
    }""")
    assert (kind, status) == ("opaqueredirect", 0)  # the 303 to /account
    status, me = browser.fetch("/auth/me")
    assert status == 200, me
    user_id = me["id"]
    first_cookie = assert_browser_signed_in(browser, user_id, passkeys=0)

    # --- 2. register a passkey on a hosted HTML page (its CSP applies): still the confirmation page
    page.add_script_tag(url="/static/passkeys.js")
    assert browser.run("() => Passkeys.supported()") is True
    assert browser.run("() => window.isSecureContext") is True
    passkey = browser.run('() => Passkeys.register("Browser key")')
    assert set(passkey) == {"id", "name", "created_at", "last_used_at", "aaguid", "backed_up", "transports"}
    assert passkey["name"] == "Browser key"
    assert passkey["last_used_at"] is None
    assert "internal" in passkey["transports"]

    held = browser.credentials()
    assert len(held) == 1, held
    assert held[0]["isResidentCredential"] is True and held[0]["rpId"] == "localhost"
    status, listed = browser.fetch("/auth/passkeys")
    assert status == 200, listed
    assert listed == {"passkeys": [passkey]}

    # --- 3. usernameless sign-in (empty allowCredentials) from a browser with no cookie
    browser.context.clear_cookies()
    assert browser.cookie(COOKIE) is None
    assert browser.fetch("/auth/me")[0] == 401
    options = browser.fetch("/auth/passkeys/login/options", "POST", {})[1]["options"]
    assert options["rpId"] == "localhost" and options.get("allowCredentials", []) == []

    tokens = browser.run("() => Passkeys.signIn()")
    claims = assert_passkey_sign_in(tokens, user_id, live_server.public_url)
    cookie = assert_browser_signed_in(browser, user_id, passkeys=1)
    assert cookie["value"] != first_cookie["value"]
    assert browser.credentials()[0]["signCount"] >= 1
    sessions_seen = {claims["sid"]}

    # --- 4. sign-in naming the email (allowCredentials lists the passkey), then conditional mediation
    browser.context.clear_cookies()
    options = browser.fetch("/auth/passkeys/login/options", "POST", {"email": EMAIL})[1]["options"]
    credential_id = base64.urlsafe_b64encode(base64.b64decode(held[0]["credentialId"])).decode().rstrip("=")
    assert [c["id"] for c in options["allowCredentials"]] == [credential_id]
    tokens = browser.run("() => Passkeys.signIn({email: 'Browser.User@Example.com'})")
    claims = assert_passkey_sign_in(tokens, user_id, live_server.public_url)
    assert_browser_signed_in(browser, user_id, passkeys=1)
    sessions_seen.add(claims["sid"])

    available = browser.run("() => Passkeys.conditionalAvailable()")
    assert isinstance(available, bool)
    assert available is True  # Chromium offers conditional mediation in a secure context

    browser.context.clear_cookies()
    # A sign-in field that offers passkeys in autofill; the virtual authenticator answers a
    # conditional request by itself, so the autofill menu itself is not exercised.
    browser.run("""() => {
        const input = document.createElement("input");
        input.type = "email"; input.name = "email"; input.autocomplete = "username webauthn";
        document.querySelector("main").append(input);
        input.focus();
    }""")
    tokens = browser.run(
        "() => Passkeys.signIn({conditional: true, signal: AbortSignal.timeout(8000)})", timeout_ms=9000
    )
    claims = assert_passkey_sign_in(tokens, user_id, live_server.public_url)
    assert_browser_signed_in(browser, user_id, passkeys=1)
    sessions_seen.add(claims["sid"])
    assert len(sessions_seen) == 3

    status, listed = browser.fetch("/auth/passkeys")
    assert status == 200 and listed["passkeys"][0]["last_used_at"] is not None

    # --- 5. SIGTERM: a clean exit; nothing secret in the logs
    live_server.terminate()
    logs = live_server.logs()
    assert live_server.process.returncode == 0, logs
    for secret in (mail.token, mail.code, tokens["refresh_token"], tokens["access_token"], first_cookie["value"]):
        assert secret not in logs

    with connection_of(live_server) as conn:
        events = conn.execute(
            "SELECT event_type, count(*) FROM audit_logs WHERE success = 1 AND event_type IN "
            "('magic_link_verified', 'passkey_registered', 'passkey_login_succeeded') GROUP BY event_type"
        ).fetchall()
        failures = conn.execute("SELECT event_type FROM audit_logs WHERE success = 0").fetchall()
    assert dict(events) == {"magic_link_verified": 1, "passkey_registered": 1, "passkey_login_succeeded": 3}
    assert failures == []
