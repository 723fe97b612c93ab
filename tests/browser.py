"""Real-browser tests: the real `passwordless serve` on http://localhost:PORT (RP ID "localhost", a
secure context) and Debian's headless Chromium driven by Playwright's sync API, with a CDP virtual
authenticator standing in for the person and their passkey (ENVIRONMENT.md, "Headless Chromium
passkey tests").

Use the sync API from plain (non-anyio) test functions: it cannot run inside an asyncio loop.

    from tests.browser import Browser, LiveServer, browser, chromium, live_server  # noqa: F401 (fixtures)

    def test_something(live_server: LiveServer, browser: Browser) -> None:
        browser.page.goto(live_server.url("/health"))
        browser.run("async () => (await fetch('/health')).status")
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from playwright.sync_api import Browser as PlaywrightBrowser
from playwright.sync_api import BrowserContext, CDPSession, Page, sync_playwright

from tests.helpers import EXECUTABLE, clean_env, free_port

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

RULE = "-" * 72


# ---------------------------------------------------------------------------------------- server


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    link: str
    token: str
    code: str
    text: str


class LiveServer:
    """A `passwordless serve` process (console email transport) whose stdout and stderr are read
    by threads as they come; `public_url` is http://localhost:PORT."""

    def __init__(self, process: subprocess.Popen[str], port: int, db: Path) -> None:
        self.process, self.port, self.db = process, port, db
        self.public_url = f"http://localhost:{port}"
        self.out: list[str] = []
        self.err: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._threads = [
            threading.Thread(target=_pump, args=(process.stdout, self.out), daemon=True),
            threading.Thread(target=_pump, args=(process.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.emails_taken = 0

    def url(self, path: str) -> str:
        return self.public_url + path

    def logs(self) -> str:
        return "".join(self.err)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server exited:\n" + self.logs()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readiness", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError("the server did not become ready:\n" + self.logs())

    def next_email(self, timeout: float = 10) -> Email:
        """The next email printed on stdout (the worker sends at once, so this waits briefly)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            blocks = re.findall(rf"^{RULE}\n(From: .*?)\n{RULE}$", "".join(self.out), re.S | re.M)
            if len(blocks) > self.emails_taken:
                self.emails_taken += 1
                return _parse_email(blocks[self.emails_taken - 1])
            time.sleep(0.02)
        raise AssertionError("no email was printed:\n" + "".join(self.out) + self.logs())

    def terminate(self, timeout: float = 15) -> float:
        """SIGTERM, then wait for the exit; the seconds it took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        elapsed = time.monotonic() - started
        for thread in self._threads:
            thread.join(timeout=5)
        return elapsed


def _pump(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)
    stream.close()


def _parse_email(block: str) -> Email:
    to = re.search(r"^To: (.+)$", block, re.M)
    subject = re.search(r"^Subject: (.+)$", block, re.M)
    link = re.search(r"^(\S+\?token=([A-Za-z0-9_-]+))$", block, re.M)
    code = re.search(r"code: ([0-9]{6})\b", block)
    assert to and subject and link and code, block
    return Email(to.group(1), subject.group(1), link.group(1), link.group(2), code.group(1), block)


@contextmanager
def serving(tmp_path: Path, extra_config: str = "") -> Iterator[LiveServer]:
    """Runs the real server (console email, default rate limits, its database in tmp_path) until
    the block ends. `extra_config` is TOML appended to the configuration: whole sections other
    than [server], [database] and [email], e.g. '[ui]\nproduct_name = "Acme"\n'."""
    port = free_port()
    db = tmp_path / "auth.db"
    config = tmp_path / "config.toml"
    config.write_text(
        "[server]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'public_url = "http://localhost:{port}"\n'
        'drain_delay = "200ms"\n'
        "[database]\n"
        f'path = "{db}"\n'
        "[email]\n"
        'transport = "console"\n' + extra_config,
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [EXECUTABLE, "serve", "--config", str(config)],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    server = LiveServer(process, port, db)
    try:
        server.wait_ready()
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except ValueError:  # closed by its reader thread at the same moment
                    pass


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The real server: console email, default rate limits, its database in tmp_path."""
    with serving(tmp_path) as server:
        yield server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[str], LiveServer]]:
    """Starts real servers with extra configuration (see `serving`); each in its own folder
    under tmp_path, all stopped when the test ends."""
    with ExitStack() as stack:
        started = 0

        def start(extra_config: str = "") -> LiveServer:
            nonlocal started
            started += 1
            folder = tmp_path / f"server-{started}"
            folder.mkdir()
            return stack.enter_context(serving(folder, extra_config))

        yield start


# --------------------------------------------------------------------------------------- browser


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
