"""The OIDC provider's pages in headless Chromium (OIDC.md, "Audit, metrics, pages"): an
application on another origin (a tiny HTTP server in the test) sends the browser to
/oauth2/authorize; the person signs in on the hosted page by the emailed code, answers the
consent page, and the browser lands back at the application with the code, as a redirect or as
an auto-submitted form (response_mode=form_post, no inline script). No CSP violation on the way."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from playwright.sync_api import expect

from tests.support.browser import Browser
from tests.support.live import LiveServer, serving
from tests.support.processes import free_port
from tests.test_pages_browser import csp_violations, email_to, submit, type_code, watch

APP_PORT = free_port()
CALLBACK = f"http://127.0.0.1:{APP_PORT}/callback"
SIGNED_OUT = f"http://127.0.0.1:{APP_PORT}/bye"


class RelyingParty(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str]]] = []

    def _answer(self, method: str, query: str) -> None:
        if urlsplit(self.path).path == "/callback":  # not the browser's /favicon.ico
            self.received.append((method, {k: v[0] for k, v in parse_qs(query).items()}))
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(b"<!doctype html><title>App</title><h1>Back at the app</h1>")

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer("GET", urlsplit(self.path).query)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length", "0"))
        self._answer("POST", self.rfile.read(length).decode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def app_server() -> Iterator[type[RelyingParty]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", APP_PORT), RelyingParty)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield RelyingParty
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    clients = f'''
[rate_limit]
magic_link_per_ip = "1000/1m"
verify_per_ip = "1000/1m"

[[oidc.clients]]
id = "wiki"
name = "The Wiki"
secret = "wiki-secret-0123456789abcdefghijklmnop"
redirect_uris = ["{CALLBACK}"]
post_logout_redirect_uris = ["{SIGNED_OUT}"]

[[oidc.clients]]
id = "first-party"
public = true
skip_consent = true
redirect_uris = ["{CALLBACK}"]
'''
    with serving(tmp_path_factory.mktemp("oidc"), clients) as started:
        yield started


def authorize(server: LiveServer, client_id: str, **extra: str) -> str:
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "scope": "openid email",
        "state": "st-" + generate_token(8), "nonce": "n", "code_challenge_method": "S256",
        "code_challenge": create_s256_code_challenge(generate_token(48)), **extra,
    }
    return server.url("/oauth2/authorize?" + urlencode(query))


def sign_in_on_the_hosted_page(server: LiveServer, browser: Browser, url: str, email: str) -> None:
    page = browser.page
    page.goto(url)
    expect(page.get_by_label("Email address")).to_have_value(email)  # login_hint filled it
    submit(page, "Email me a sign-in link")
    type_code(page, email_to(server, email).code)


def test_consent_then_back_to_the_app_with_a_code(
    server: LiveServer, browser: Browser, app_server: type[RelyingParty], tmp_path: Path
) -> None:
    said = watch(browser.page)
    app_server.received.clear()
    sign_in_on_the_hosted_page(server, browser, authorize(server, "wiki", login_hint="wiki.user@example.com"),
                               "wiki.user@example.com")
    page = browser.page
    expect(page.get_by_role("heading", level=1)).to_have_text("Allow The Wiki?")
    expect(page.locator("main")).to_contain_text("Your email address")
    submit(page, "Allow")
    expect(page.get_by_role("heading", level=1)).to_have_text("Back at the app")
    method, params = app_server.received[-1]
    assert method == "GET" and params["code"] and params["state"].startswith("st-") and params["iss"] == server.public_url
    assert csp_violations(said) == []


def test_form_post_without_consent_submits_itself(
    server: LiveServer, browser: Browser, app_server: type[RelyingParty]
) -> None:
    said = watch(browser.page)
    app_server.received.clear()
    url = authorize(server, "first-party", response_mode="form_post", login_hint="fp.user@example.com")
    sign_in_on_the_hosted_page(server, browser, url, "fp.user@example.com")
    expect(browser.page.get_by_role("heading", level=1)).to_have_text("Back at the app")
    method, params = app_server.received[-1]
    assert method == "POST" and params["code"] and params["iss"] == server.public_url
    assert csp_violations(said) == []


def test_logout_without_a_hint_is_confirmed_then_returns_to_the_app(
    server: LiveServer, browser: Browser, app_server: type[RelyingParty]
) -> None:
    said = watch(browser.page)
    url = authorize(server, "first-party", login_hint="bye.user@example.com")
    sign_in_on_the_hosted_page(server, browser, url, "bye.user@example.com")
    page = browser.page
    expect(page.get_by_role("heading", level=1)).to_have_text("Back at the app")
    query = urlencode({"client_id": "wiki", "post_logout_redirect_uri": SIGNED_OUT, "state": "z1"})
    page.goto(server.url("/oauth2/logout?" + query))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign out?")
    expect(page.locator("main")).to_contain_text("The Wiki")
    submit(page, "Sign out")
    page.wait_for_url(SIGNED_OUT + "?state=z1")  # the form's 303 to the app is let through (CSP form-action)
    page.goto(server.url("/oauth2/logout"))
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed out")
    page.goto(server.url("/account"))
    expect(page.get_by_label("Email address")).to_be_visible()  # the session is over
    assert csp_violations(said) == []
