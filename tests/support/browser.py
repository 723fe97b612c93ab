"""Real-browser tests: the real `passwordless serve` on http://localhost:PORT (RP ID "localhost", a
secure context) and Debian's headless Chromium driven by Playwright's sync API, with a CDP virtual
authenticator standing in for the person and their passkey (ENVIRONMENT.md, "Headless Chromium
passkey tests").

Use the sync API from plain (non-anyio) test functions: it cannot run inside an asyncio loop.

    from tests.support.browser import Browser
    from tests.support.live import LiveServer

    def test_something(live_server: LiveServer, browser: Browser) -> None:
        browser.page.goto(live_server.url("/health"))
        browser.run("async () => (await fetch('/health')).status")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser as PlaywrightBrowser
from playwright.sync_api import BrowserContext, CDPSession, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
]
# A person with a platform passkey that verifies them (fingerprint, PIN) and always says yes.
VIRTUAL_AUTHENTICATOR = {
    "protocol": "ctap2", "ctap2Version": "ctap2_1", "transport": "internal", "hasResidentKey": True,
    "hasUserVerification": True, "isUserVerified": True, "automaticPresenceSimulation": True,
}
TIMEOUT_MS = 10_000  # a modal WebAuthn call with nothing to answer it hangs forever: never wait that long

class BrowserError(AssertionError):
    """A script run in the page threw (or timed out); carries the error's name, message and code."""


@dataclass
class Browser:
    """A fresh context of headless Chromium, one page, and a virtual authenticator on it."""

    context: BrowserContext
    page: Page
    cdp: CDPSession
    authenticator_id: str

    def run(self, function: str, arg: Any = None, timeout_ms: int = TIMEOUT_MS) -> Any:
        """Runs `function` (JS source of a function of one argument, may be async) in the page and
        returns its result; a throw or a hang past `timeout_ms` becomes a BrowserError."""
        wrapped = f"""async (arg) => {{
            const run = {function};
            let timer;
            const limit = new Promise((_, reject) => {{
                timer = setTimeout(() => reject(new Error("timed out after {timeout_ms} ms")), {timeout_ms});
            }});
            try {{
                return {{ ok: true, value: await Promise.race([Promise.resolve().then(() => run(arg)), limit]) }};
            }} catch (e) {{
                return {{ ok: false, error: {{ name: String(e && e.name), message: String(e && e.message),
                                              code: e && e.code, status: e && e.status }} }};
            }} finally {{
                clearTimeout(timer);
            }}
        }}"""
        result = self.page.evaluate(wrapped, arg)
        if not result["ok"]:
            raise BrowserError(json.dumps(result["error"]))
        return result["value"]

    def fetch(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        """A same-origin fetch from the page (cookies included); the status and the JSON (or text)."""
        status, data = self.run(
            """async ([path, method, body]) => {
                const init = { method, credentials: "same-origin", headers: {} };
                if (body !== null) {
                    init.headers["content-type"] = "application/json";
                    init.body = JSON.stringify(body);
                }
                const answer = await fetch(path, init);
                const text = await answer.text();
                let data = text;
                try { data = JSON.parse(text); } catch (e) { /* not JSON */ }
                return [answer.status, data];
            }""",
            [path, method, body],
        )
        return int(status), data

    def credentials(self) -> list[dict[str, Any]]:
        """What the virtual authenticator holds."""
        found = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id})
        return list(found["credentials"])

    def cookie(self, name: str) -> dict[str, Any] | None:
        found = [c for c in self.context.cookies() if c["name"] == name]
        assert len(found) <= 1, found
        return dict(found[0]) if found else None


def _chromium_missing() -> str | None:
    if CHROMIUM.is_file():
        return None
    return (
        f"the browser tests need Chromium at {CHROMIUM} (Playwright's own browser download does not work "
        "here): run scripts/setup test, or sudo apt-get install -y --no-install-recommends chromium"
    )


@pytest.fixture(scope="module")
def chromium() -> Iterator[PlaywrightBrowser]:
    """One headless Chromium per test module (Playwright gives it a fresh, temporary profile);
    each test gets its own context from it (`browser`)."""
    missing = _chromium_missing()
    if missing:
        pytest.fail(missing, pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def browsing(
    chromium: PlaywrightBrowser, authenticator: dict[str, Any] | None = VIRTUAL_AUTHENTICATOR, **options: Any
) -> Iterator[Browser]:
    """A fresh browser context (no cookies, no storage) with one page, light scheme, 800×600,
    en-US, unless `options` (Playwright's new_context arguments: color_scheme="dark",
    viewport=..., java_script_enabled=False...) say otherwise; with `authenticator` (CDP
    WebAuthn.addVirtualAuthenticator options) as a virtual authenticator on the page, or, with
    None, WebAuthn left to the browser: no authenticator at all (`authenticator_id` is "")."""
    settings: dict[str, Any] = {"color_scheme": "light", "locale": "en-US", "viewport": {"width": 800, "height": 600}}
    settings.update(options)
    context = chromium.new_context(**settings)
    try:
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        try:
            authenticator_id = ""
            if authenticator is not None:
                cdp.send("WebAuthn.enable", {"enableUI": False})
                added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": authenticator})
                authenticator_id = added["authenticatorId"]
            yield Browser(context, page, cdp, authenticator_id)
        finally:
            cdp.detach()
    finally:
        context.close()


@pytest.fixture
def browser(chromium: PlaywrightBrowser) -> Iterator[Browser]:
    """A fresh browser context (no cookies, no storage) with one page and a virtual authenticator."""
    with browsing(chromium) as opened:
        yield opened


@pytest.fixture
def open_browser(chromium: PlaywrightBrowser) -> Iterator[Callable[..., Browser]]:
    """Opens more browser contexts, each like `browsing(chromium, ...)` takes them (another
    person or device, a dark scheme, no JavaScript, no authenticator); all closed when the test ends."""
    with ExitStack() as stack:

        def open_(authenticator: dict[str, Any] | None = VIRTUAL_AUTHENTICATOR, **options: Any) -> Browser:
            return stack.enter_context(browsing(chromium, authenticator, **options))

        yield open_
