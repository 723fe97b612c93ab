"""The hosted pages in a real browser (issue 6; API.md "Hosted pages", "Headers on every
response", "Sign in by email", "Passkeys"): headless Chromium driven by Playwright against the
real `passwordless serve` on http://localhost:PORT, emails read from its console transport, a
CDP virtual authenticator standing in for the person's passkey (ENVIRONMENT.md, "Headless
Chromium passkey tests").

Every step goes through the pages as a person would: typing, clicking, following the emailed
link. Screenshots of the sign-in page and the account page (light and dark), the code page, a
phone's view and the branded page are saved to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, Response, expect

from tests.support.browser import VIRTUAL_AUTHENTICATOR, Browser
from tests.support.engine import connection_of
from tests.support.live import Email, LiveServer, serving
from tests.support.signin import other_code

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
COOKIE = "pl_session"  # http public_url: no __Host- prefix
OpenBrowser = Callable[..., Browser]
StartServer = Callable[[str], LiveServer]

FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
# A person whose authenticator does not verify them: Chromium answers NotAllowedError, as for "Cancel".
REFUSING_AUTHENTICATOR = dict(VIRTUAL_AUTHENTICATOR, isUserVerified=False)
LINK_GONE = "The sign-in link has expired or was already used. Ask for a new one."
WRONG_CODE = "That code is wrong or has expired. Check the newest email, or ask for a new code."
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server for the module (each test signs in its own email addresses). The limits
    per address are the defaults; those per IP are raised, as every test browses from 127.0.0.1."""
    with serving(
        tmp_path_factory.mktemp("pages"),
        '[rate_limit]\nmagic_link_per_ip = "1000/1m"\nverify_per_ip = "1000/1m"\n',
    ) as started:
        yield started


def email_to(server: LiveServer, address: str) -> Email:
    """The next email printed for `address` (skipping any left over for others)."""
    while True:
        mail = server.next_email()
        if mail.to == address:
            return mail


def watch(page: Page) -> list[str]:
    """Everything the page says on its console, and every uncaught error or rejection."""
    said: list[str] = []
    page.on("console", lambda message: said.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: said.append(f"pageerror: {error}"))
    return said


def csp_violations(said: list[str]) -> list[str]:
    return [line for line in said if "Content Security Policy" in line or "Refused to" in line]


def submit(page: Page, button: str) -> Response:
    """Clicks the button of that name and waits for the page it leads to."""
    with page.expect_navigation() as navigation:
        # Exact, or the visible word followed by its hidden context ("Remove Work laptop").
        page.get_by_role("button", name=re.compile(rf"^{re.escape(button)}(\s|$)")).first.click()
    response = navigation.value
    assert response is not None
    return response


def ask_for_email(server: LiveServer, browser: Browser, email: str, path: str = "/") -> tuple[Response, Email]:
    """On the sign-in page, types the email and sends it; the code page and the email sent."""
    page = browser.page
    page.goto(server.url(path))
    page.get_by_label("Email address").fill(email)
    answer = submit(page, "Email me a sign-in link")
    assert answer.status == 200, answer.text()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    expect(page.locator("main")).to_contain_text(f"We sent a sign-in link and a 6-digit code to {email.strip().lower()}")
    return answer, email_to(server, email.strip().lower())


def type_code(page: Page, code: str) -> Response:
    page.get_by_label("Code from the email").fill(code)
    return submit(page, "Sign in")


def sign_in_by_code(server: LiveServer, browser: Browser, email: str) -> Email:
    _, mail = ask_for_email(server, browser, email)
    type_code(browser.page, mail.code)
    assert browser.page.url == server.url("/account")
    expect(browser.page.locator("main")).to_contain_text(f"Signed in as {email.lower()}.")
    return mail


def touch(browser: Browser, automatic: bool) -> None:
    """Whether the virtual authenticator answers by itself (True) or waits for a touch that never comes."""
    browser.cdp.send(
        "WebAuthn.setAutomaticPresenceSimulation", {"authenticatorId": browser.authenticator_id, "enabled": automatic}
    )


def sign_in_quickly(server: LiveServer, browser: Browser, address: str) -> None:
    """Sign-in as setup, when the sign-in pages are not what a test is about: from a page of
    ours, the sign-in API sends the email, and the confirmation page's form, posted by script,
    sets the session cookie (test_sign_in_by_emailed_link does it with the button)."""
    browser.page.goto(server.url("/health"))
    assert browser.fetch("/auth/magic-link", "POST", {"email": address}) == (202, {"status": "sent"})
    kind = browser.run(
        """async (token) => (await fetch("/auth/magic-link/verify", {method: "POST", credentials: "same-origin",
            body: new URLSearchParams({token}), redirect: "manual"})).type""",
        email_to(server, address).token,
    )
    assert kind == "opaqueredirect"  # the 303 to /account
    assert me(browser)[0] == 200


def sign_in_elsewhere(server: LiveServer, address: str, user_agent: str) -> str:
    """A session on another device, made through the API by code (no browser): its access token."""
    with httpx.Client(base_url=server.public_url, headers={"user-agent": user_agent}) as client:
        assert client.post("/auth/magic-link", json={"email": address}).status_code == 202
        answer = client.post("/auth/code/verify", json={"email": address, "code": email_to(server, address).code})
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token


def bearer_works(server: LiveServer, token: str) -> bool:
    status: int = httpx.get(server.url("/auth/me"), headers={"authorization": f"Bearer {token}"}).status_code
    assert status in (200, 401)
    return status == 200


def me(browser: Browser) -> tuple[int, Any]:
    return browser.fetch("/auth/me")


def assert_signed_in(browser: Browser, email: str) -> None:
    cookie = browser.cookie(COOKIE)
    assert cookie is not None, browser.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/")
    status, who = me(browser)
    assert status == 200, who
    assert who["email"] == email


def assert_a_sentence(page: Page, response: Response | None = None) -> None:
    """A page a person reads: HTML, no JSON, no stack trace."""
    if response is not None:
        assert response.headers["content-type"].startswith("text/html"), response.headers
    text = page.locator("body").inner_text()
    assert "{" not in text and '"error"' not in text and "Traceback" not in text, text


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def item(page: Page, text: str) -> Any:
    """The list item (a passkey or a session) on /account that shows `text`."""
    return page.locator("li.item").filter(has_text=text)


# Checks run in the page ------------------------------------------------------------------------

UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea, button")]
    .filter((el) => el.type !== "hidden")
    .filter((el) => {
        if (el.tagName === "BUTTON") return !el.textContent.trim() && !el.getAttribute("aria-label");
        const labels = [...(el.labels || [])].filter((label) => label.textContent.trim());
        return !labels.length && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby");
    })
    .map((el) => el.outerHTML)"""

# The page's width on a phone of `width` CSS pixels (a page too wide for the phone widens
# innerWidth too), and what sticks out: past the phone's edge, or past its own parent's box.
OVERFLOW = """(width) => {
    const right = (el) => el.getBoundingClientRect().right;
    const wide = [...document.querySelectorAll("main, main *")]
        .filter((el) => el.getClientRects().length)
        .filter((el) => (el.tagName === "MAIN" ? right(el) > width : right(el) > right(el.parentElement) + 0.5))
        .map((el) => el.outerHTML.slice(0, 100));
    return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth, wide};
}"""

# WCAG contrast of every visible piece of text against what is really behind it (colours are
# read back from a canvas, so color-mix() and any colour syntax count).
CONTRAST = """() => {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 1;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const rgba = (css) => {
        ctx.clearRect(0, 0, 1, 1);
        ctx.fillStyle = "#000";
        ctx.fillStyle = css;
        ctx.fillRect(0, 0, 1, 1);
        const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
        return [r, g, b, a / 255];
    };
    const over = (top, bottom) => top.slice(0, 3).map((c, i) => c * top[3] + bottom[i] * (1 - top[3])).concat(1);
    const background = (el) => {
        const layers = [];
        for (let node = el; node; node = node.parentElement) {
            const colour = rgba(getComputedStyle(node).backgroundColor);
            if (colour[3] > 0) layers.push(colour);
            if (colour[3] >= 1) break;
        }
        let base = matchMedia("(prefers-color-scheme: dark)").matches ? [0, 0, 0, 1] : [255, 255, 255, 1];
        for (const layer of layers.reverse()) base = over(layer, base);
        return base;
    };
    const luminance = (c) => {
        const [r, g, b] = c.slice(0, 3).map((v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const found = [];
    for (const el of document.querySelectorAll("body *")) {
        const own = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
        const rect = el.getBoundingClientRect();
        if (!own || rect.width < 2 || rect.height < 2 || getComputedStyle(el).visibility === "hidden") continue;
        const style = getComputedStyle(el);
        const back = background(el);
        const fore = over(rgba(style.color), back);
        const [hi, lo] = [luminance(fore), luminance(back)].sort((a, b) => b - a);
        const ratio = (hi + 0.05) / (lo + 0.05);
        const size = parseFloat(style.fontSize);
        const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
        found.push({ text: el.textContent.trim().slice(0, 40), tag: el.tagName, ratio: Math.round(ratio * 100) / 100,
                     needed: large ? 3 : 4.5 });
    }
    return found;
}"""


def assert_readable(page: Page, where: str) -> None:
    found = page.evaluate(CONTRAST)
    assert len(found) >= 5, found
    poor = [f for f in found if f["ratio"] < f["needed"]]
    assert poor == [], f"{where}: text below WCAG AA contrast: {poor}"


def assert_accessible_basics(page: Page, focused: str | None) -> None:
    """lang, a title, one h1, a viewport for phones, every control named, and focus where typing starts."""
    assert page.evaluate("() => document.documentElement.lang") == "en"
    assert page.title().strip()
    assert page.locator("h1").count() == 1
    assert "width=device-width" in (page.locator('meta[name="viewport"]').get_attribute("content") or "")
    assert page.evaluate(UNLABELLED) == []
    if focused is not None:
        assert page.evaluate("() => document.activeElement && document.activeElement.id") == focused


# -------------------------------------------------------------------------------------- tests


def test_sign_in_by_emailed_link(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    said = watch(page)
    _, mail = ask_for_email(server, browser, " Link.User@Example.com ")
    assert mail.link.startswith(server.url("/auth/magic-link/verify?token="))
    assert browser.cookie(COOKIE) is None

    # the confirmation page: the same look as the other pages (our stylesheet, the theme, the card)
    confirmation = page.goto(mail.link)
    assert confirmation is not None and confirmation.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert page.locator("main.card").count() == 1
    sheets = page.evaluate("() => [...document.styleSheets].map((s) => new URL(s.href).pathname)")
    assert sheets == ["/static/style.css", "/ui/theme.css"]
    assert page.evaluate("() => getComputedStyle(document.querySelector('main')).borderRadius") == "14px"
    assert_accessible_basics(page, focused=None)
    assert page.evaluate("() => document.activeElement.textContent") == "Sign in"

    landed = submit(page, "Sign in")
    assert page.url == server.url("/account")
    assert landed.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.locator("main")).to_contain_text("Signed in as link.user@example.com.")
    # signed in by email, no passkey yet: the page offers one
    expect(page.locator(".notice")).to_contain_text("Add a passkey to sign in next time")
    expect(page.get_by_role("button", name="Add a passkey")).to_be_visible()
    expect(page.locator("main")).to_contain_text("No passkeys yet.")
    assert_signed_in(browser, "link.user@example.com")
    assert csp_violations(said) == [] and [line for line in said if line.startswith("pageerror")] == []


def test_sign_in_by_typed_code_on_the_same_page(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    page.goto(server.url("/"))
    expect(page.locator("#passkey-area")).to_be_visible()
    assert_readable(page, "/ (light)")
    screenshot(page, "sign-in-light")
    code_page, mail = ask_for_email(server, browser, "code.user@example.com")
    assert_readable(page, "the code page (light)")
    screenshot(page, "code-page-light")
    assert page.url == server.url("/")  # the sign-in page's own form answered with the code form
    assert code_page.headers["cache-control"] == "no-store"
    expect(page.get_by_label("Code from the email")).to_be_focused()
    assert page.get_by_label("Code from the email").get_attribute("autocomplete") == "one-time-code"
    expect(page.get_by_role("link", name="Use a different email")).to_have_attribute("href", "/")
    assert browser.cookie(COOKIE) is None

    landed = type_code(page, mail.code)
    assert page.url == server.url("/account"), landed.text()[:300]
    expect(page.locator("main")).to_contain_text("Signed in as code.user@example.com.")
    assert_signed_in(browser, "code.user@example.com")
    # the code spent the ticket: its link no longer works
    page.goto(mail.link)
    expect(page.get_by_role("alert")).to_have_text(LINK_GONE)


def test_redirect_to_is_honoured_when_allowed_and_ignored_otherwise(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    address = "redirect.user@example.com"
    allowed = server.url("/account?from=app")

    _, mail = ask_for_email(server, browser, address, path="/?redirect_to=" + quote(allowed, safe=""))
    assert page.locator('input[name="redirect_to"]').get_attribute("value") == allowed
    type_code(page, mail.code)
    assert page.url == allowed
    expect(page.locator("main")).to_contain_text(f"Signed in as {address}.")

    browser.context.clear_cookies()
    page.goto(server.url("/?redirect_to=" + quote("http://evil.example/", safe="")))
    expect(page.get_by_role("alert")).to_have_text(
        "That return address is not allowed, so you will go to your account after signing in."
    )
    assert page.locator('input[name="redirect_to"]').get_attribute("value") == ""
    assert page.locator("main").get_attribute("data-redirect") == "/account"
    page.get_by_label("Email address").fill(address)
    submit(page, "Email me a sign-in link")
    page.goto(email_to(server, address).link)  # the link path: its ticket carries no redirect either
    submit(page, "Sign in")
    assert page.url == server.url("/account")
    assert_signed_in(browser, address)


def test_passkeys_on_the_account_page(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    address = "passkey.user@example.com"
    said = watch(page)
    sign_in_by_code(server, browser, address)

    # add: the virtual authenticator makes one; the list shows it, the offer is gone
    submit(page, "Add a passkey")
    assert page.url == server.url("/account?done=added")
    expect(page.get_by_role("status").filter(has_text="Your passkey was added.")).to_be_visible()
    expect(page.locator(".notice").filter(has_text="Add a passkey to sign in")).to_have_count(0)
    expect(item(page, "Passkey (Chrome on Linux)")).to_have_count(1)
    assert len(browser.credentials()) == 1
    assert_accessible_basics(page, focused=None)
    assert_readable(page, "/account (light)")
    screenshot(page, "account-light")

    # the same device again: the authenticator refuses, the page says why
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("#status")).to_have_text("This device already has a passkey for your account.")
    assert len(browser.credentials()) == 1

    # rename through the form
    page.get_by_label("New name for Passkey (Chrome on Linux)").fill("Work laptop")
    submit(page, "Rename")
    expect(page.get_by_role("status").filter(has_text="The passkey was renamed.")).to_be_visible()
    expect(item(page, "Work laptop")).to_have_count(1)
    expect(item(page, "Passkey (Chrome on Linux)")).to_have_count(0)
    assert [k["name"] for k in browser.fetch("/auth/passkeys")[1]["passkeys"]] == ["Work laptop"]

    # sign out: back on the sign-in page with no session (the authenticator waits for a touch
    # meanwhile, so passkey autofill cannot sign straight back in)
    touch(browser, False)
    cookie = browser.cookie(COOKIE)
    assert cookie is not None
    submit(page, "Sign out")
    assert page.url == server.url("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert browser.cookie(COOKIE) is None
    assert me(browser)[0] == 401
    stale = page.request.get(server.url("/auth/me"), headers={"cookie": f"{COOKIE}={cookie['value']}"})
    assert stale.status == 401  # the session itself was ended, not only the cookie dropped

    # passkey autofill: the sign-in page's conditional request, answered (the virtual
    # authenticator picks the passkey as a person would from the autofill menu), signs in
    touch(browser, True)
    assert browser.run("() => Passkeys.conditionalAvailable()") is True
    page.goto(server.url("/"))
    page.wait_for_url(server.url("/account"))
    assert_signed_in(browser, address)

    # the button, in a browser without passkey autofill; it honours redirect_to
    page.add_init_script("PublicKeyCredential.isConditionalMediationAvailable = async () => false;")
    submit(page, "Sign out")
    assert me(browser)[0] == 401
    back = server.url("/account?from=passkey")
    page.goto(server.url("/?redirect_to=" + quote(back, safe="")))
    with page.expect_navigation(url=back):
        page.get_by_role("button", name="Sign in with a passkey").click()
    expect(item(page, "Work laptop")).to_contain_text("last used")
    expect(item(page, "Work laptop")).not_to_contain_text("last used never")
    assert_signed_in(browser, address)

    # remove it
    submit(page, "Remove")
    expect(page.get_by_role("status").filter(has_text="The passkey was removed.")).to_be_visible()
    expect(page.locator("main")).to_contain_text("No passkeys yet.")
    expect(page.locator(".notice").filter(has_text="Add a passkey to sign in")).to_have_count(1)
    assert browser.fetch("/auth/passkeys")[1] == {"passkeys": []}
    assert csp_violations(said) == [] and [line for line in said if line.startswith("pageerror")] == []


def age_sign_in(server: LiveServer, address: str) -> None:
    """Makes the user's sessions an hour old, as if they signed in long ago (auth.reauth_window
    is 10 minutes): the real server reads the session's auth_time from its database."""
    with connection_of(server) as conn:
        conn.execute(
            "UPDATE sessions SET auth_time = auth_time - 3600"
            " WHERE user_id = (SELECT id FROM users WHERE email = ?)",
            (address,),
        )


def test_adding_a_passkey_after_an_old_sign_in_asks_to_confirm_first(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    address = "reauth.user@example.com"
    said = watch(page)
    sign_in_by_code(server, browser, address)
    age_sign_in(server, address)

    # no passkey yet: the page offers an emailed code; a wrong one is said so, the right one
    # signs this browser in anew and the passkey is added without another click
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("#status")).to_have_text("Confirm it is you to add a passkey.")
    expect(page.get_by_role("button", name="Confirm with a passkey")).to_be_hidden()
    page.get_by_role("button", name="Email me a code").click()
    expect(page.locator("#status")).to_have_text(f"We sent a 6-digit code to {address}. Type it here.")
    mail = email_to(server, address)
    page.get_by_label("Code from the email").fill(other_code(mail.code))
    page.get_by_role("button", name="Confirm and add the passkey").click()
    expect(page.locator("#status")).to_have_text(WRONG_CODE)
    page.get_by_label("Code from the email").fill(mail.code)
    with page.expect_navigation(url=server.url("/account?done=added")):
        page.get_by_role("button", name="Confirm and add the passkey").click()
    expect(item(page, "Passkey (Chrome on Linux)")).to_have_count(1)
    assert len(browser.credentials()) == 1

    # with a passkey: confirming with it is offered, and adding goes on at once (this device
    # holds the account's passkey already, so the authenticator declines the new one)
    age_sign_in(server, address)
    assert browser.fetch("/auth/passkeys/register/options", "POST", {})[0] == 403
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_role("button", name="Confirm with a passkey").click()
    expect(page.locator("#status")).to_have_text("This device already has a passkey for your account.")
    assert browser.fetch("/auth/passkeys/register/options", "POST", {})[0] == 200  # a new, recent sign-in
    assert csp_violations(said) == [] and [line for line in said if line.startswith("pageerror")] == []


def test_sessions_on_the_account_page(server: LiveServer, browser: Browser, open_browser: OpenBrowser) -> None:
    page = browser.page
    address = "sessions.user@example.com"
    sign_in_quickly(server, browser, address)
    firefox = open_browser(None, user_agent=FIREFOX_UA)  # another browser
    sign_in_quickly(server, firefox, address)
    safari = sign_in_elsewhere(server, address, SAFARI_UA)  # an app on another device

    page.goto(server.url("/account"))
    items = page.locator("li.item")
    expect(items).to_have_count(3)
    this = item(page, "This browser")
    expect(this).to_have_count(1)
    expect(this).to_contain_text("Chrome on Linux")
    expect(this.get_by_role("button", name="End")).to_have_count(0)  # "Sign out" ends this one
    expect(item(page, "Firefox on Linux").get_by_role("button", name="End")).to_have_count(1)
    expect(item(page, "Safari on macOS")).to_contain_text("127.0.0.1")

    # end the Firefox one: its cookie stops working, the others go on
    with page.expect_navigation():
        item(page, "Firefox on Linux").get_by_role("button", name="End").click()
    expect(page.get_by_role("status").filter(has_text="That session was ended.")).to_be_visible()
    expect(items).to_have_count(2)
    expect(item(page, "Firefox on Linux")).to_have_count(0)
    assert firefox.cookie(COOKIE) is not None and me(firefox)[0] == 401
    firefox.page.goto(server.url("/account"))
    assert firefox.page.url == server.url("/")  # /account sends a signed-out browser to sign in
    assert bearer_works(server, safari) and me(browser)[0] == 200

    # end all the others
    submit(page, "End all other sessions")
    expect(page.get_by_role("status").filter(has_text="Every other session was ended.")).to_be_visible()
    expect(items).to_have_count(1)
    expect(item(page, "This browser")).to_have_count(1)
    assert not bearer_works(server, safari)
    assert_signed_in(browser, address)


def test_errors_a_person_may_hit_are_sentences(
    server: LiveServer, browser: Browser, start_server: StartServer
) -> None:
    # a short-lived link, asked for first so that it has expired by the end of this test
    short = start_server('[auth]\nmagic_link_ttl = "2s"\n')
    later = Browser(browser.context, browser.context.new_page(), browser.cdp, "")  # a second tab
    _, expiring = ask_for_email(short, later, "late@example.com")
    asked_at = time.monotonic()

    page = browser.page
    said = watch(page)

    # a wrong code: a sentence in the alert region, the form ready for another try; then the right one
    _, mail = ask_for_email(server, browser, "errors.user@example.com")
    wrong = "111111" if mail.code != "111111" else "222222"
    answer = type_code(page, wrong)
    assert answer.status == 401
    assert_a_sentence(page, answer)
    expect(page.get_by_role("alert")).to_have_text(WRONG_CODE)
    expect(page.get_by_label("Code from the email")).to_be_focused()
    assert page.get_by_label("Code from the email").get_attribute("aria-describedby") == "code-error"
    type_code(page, "12ab")
    expect(page.get_by_role("alert")).to_have_text("The code is the 6 digits from the email.")
    type_code(page, mail.code)
    assert page.url == server.url("/account")

    # a used link: opened in two tabs, used in the first; the second tab's button then says so
    browser.context.clear_cookies()
    _, mail = ask_for_email(server, browser, "errors.user@example.com")
    other_tab = browser.context.new_page()
    other_tab.goto(mail.link)
    page.goto(mail.link)
    submit(page, "Sign in")
    assert page.url == server.url("/account")
    answer = submit(other_tab, "Sign in")
    assert answer.status == 401
    assert_a_sentence(other_tab, answer)
    expect(other_tab.get_by_role("heading", level=1)).to_have_text("This link no longer works")
    expect(other_tab.get_by_role("alert")).to_have_text(LINK_GONE)
    expect(other_tab.get_by_role("link", name="Get a new sign-in link")).to_have_attribute("href", "/")
    other_tab.close()

    # rate limited: the sixth email for one address within 15 minutes; the page stays usable
    browser.context.clear_cookies()
    page.goto(server.url("/"))
    for _ in range(5):  # the API and the page share the limit: five emails for one address
        assert browser.fetch("/auth/magic-link", "POST", {"email": "busy@example.com"})[0] == 202
        email_to(server, "busy@example.com")
    page.get_by_label("Email address").fill("busy@example.com")
    answer = submit(page, "Email me a sign-in link")
    assert answer.status == 429 and int(answer.headers["retry-after"]) > 0
    assert_a_sentence(page, answer)
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^Too many attempts\. Try again in \d+ seconds\.$"))
    expect(page.get_by_label("Email address")).to_have_value("busy@example.com")
    expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_visible()
    page.get_by_label("Email address").fill("not.busy@example.com")  # the same form still works
    submit(page, "Email me a sign-in link")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    email_to(server, "not.busy@example.com")

    # the expired code and link
    time.sleep(max(0.0, 2.2 - (time.monotonic() - asked_at)))
    answer = type_code(later.page, expiring.code)
    assert answer.status == 401
    expect(later.page.get_by_role("alert")).to_have_text(WRONG_CODE)
    expired = later.page.goto(expiring.link)
    assert expired is not None and expired.status == 401
    assert_a_sentence(later.page, expired)
    expect(later.page.get_by_role("alert")).to_have_text(LINK_GONE)
    assert csp_violations(said) == [] and [line for line in said if line.startswith("pageerror")] == []


def test_passkey_cancelled_or_missing_is_a_sentence(server: LiveServer, open_browser: OpenBrowser) -> None:
    # the person cancels (their authenticator does not verify them: the browser answers as for "Cancel")
    refusing = open_browser(REFUSING_AUTHENTICATOR)
    said = watch(refusing.page)
    refusing.page.goto(server.url("/"))
    refusing.page.get_by_role("button", name="Sign in with a passkey").click()
    status = refusing.page.get_by_role("status")
    expect(status).to_have_attribute("aria-live", "polite")
    expect(status).to_contain_text("The passkey request was cancelled or timed out.")
    assert refusing.page.url == server.url("/")

    # no passkey on this device: an authenticator holding nothing for this site
    empty = open_browser(VIRTUAL_AUTHENTICATOR)
    said_too = watch(empty.page)
    empty.page.goto(server.url("/"))
    empty.page.get_by_role("button", name="Sign in with a passkey").click()
    expect(empty.page.get_by_role("status")).not_to_have_text(re.compile("^$|Follow your browser"))
    expect(empty.page.get_by_role("status")).to_have_text(re.compile(r"^[A-Z][^{}]+\.$"))
    assert empty.page.url == server.url("/")

    # adding a passkey, cancelled, on the account page
    sign_in_quickly(server, refusing, "cancel.user@example.com")
    refusing.page.goto(server.url("/account"))
    refusing.page.get_by_role("button", name="Add a passkey").click()
    expect(refusing.page.get_by_role("status")).to_have_text(
        "No passkey was made: the request was cancelled or timed out."
    )
    expect(refusing.page.get_by_role("button", name="Add a passkey")).to_be_enabled()
    assert [line for line in said + said_too if line.startswith("pageerror")] == []


def test_email_link_and_code_work_without_javascript(server: LiveServer, open_browser: OpenBrowser) -> None:
    plain = open_browser(None, java_script_enabled=False)
    page = plain.page
    _, mail = ask_for_email(server, plain, "nojs.user@example.com")
    page.goto(mail.link)
    submit(page, "Sign in")
    assert page.url == server.url("/account")
    expect(page.locator("main")).to_contain_text("Signed in as nojs.user@example.com.")
    expect(page.get_by_role("button", name="Add a passkey")).to_be_hidden()  # needs script: no dead button
    assert plain.cookie(COOKIE) is not None

    submit(page, "Sign out")
    assert page.url == server.url("/")
    assert plain.cookie(COOKIE) is None
    expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_hidden()

    _, mail = ask_for_email(server, plain, "nojs.other@example.com")
    type_code(page, mail.code)
    assert page.url == server.url("/account")
    expect(page.locator("main")).to_contain_text("Signed in as nojs.other@example.com.")
    assert plain.cookie(COOKIE) is not None


def test_accessibility_basics(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    page.goto(server.url("/"))
    assert_accessible_basics(page, focused="email")
    email = page.get_by_label("Email address")
    assert email.get_attribute("autocomplete") == "username webauthn"
    assert email.get_attribute("type") == "email"
    assert page.title() == "Sign in · passwordless"
    status = page.locator('[role="status"]')
    expect(status).to_have_count(1)
    expect(status).to_have_attribute("aria-live", "polite")
    alert = page.locator('[role="alert"]')
    expect(alert).to_have_count(1)
    expect(alert).to_have_attribute("aria-live", "assertive")
    # focus order: the field, its button, then the passkey button; focus is visible
    order = []
    for _ in range(2):
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.textContent.trim()"))
        assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") == "solid"
    assert order == ["Email me a sign-in link", "Sign in with a passkey"]

    # an empty submit: a visible sentence, focus back in the field
    answer = submit(page, "Email me a sign-in link")
    assert answer.status == 400
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("Enter your email address, like name@example.com.")
    assert page.get_by_label("Email address").get_attribute("aria-describedby") == "email-error"
    assert page.locator("#email-error").get_by_role("alert").count() == 1
    assert_accessible_basics(page, focused="email")

    page.get_by_label("Email address").fill("a11y.user@example.com")
    submit(page, "Email me a sign-in link")
    assert_accessible_basics(page, focused="code")
    expect(page.locator('[role="alert"]')).to_have_count(1)
    assert page.title() == "Check your email · passwordless"
    type_code(page, email_to(server, "a11y.user@example.com").code)
    assert_accessible_basics(page, focused=None)
    assert page.title() == "Your account · passwordless"
    expect(page.locator('[role="status"][aria-live="polite"]')).to_have_count(1)
    assert page.locator("h2").all_inner_texts() == ["Passkeys", "Sessions", "Sign out"]


def test_branding_from_ui_settings(start_server: StartServer, open_browser: OpenBrowser) -> None:
    acme = start_server('[ui]\nproduct_name = "Acme"\naccent_color = "#aa3311"\nsupport_email = "help@acme.test"\n')
    light = open_browser()
    page = light.page
    background = "() => getComputedStyle(document.querySelector('button[type=submit]')).backgroundColor"
    page.goto(acme.url("/"))
    assert page.title() == "Sign in · Acme"
    expect(page.locator("main")).to_contain_text("Sign in to Acme with your email or a passkey.")
    assert page.evaluate(background) == "rgb(170, 51, 17)"
    expect(page.get_by_role("link", name="help@acme.test")).to_have_attribute("href", "mailto:help@acme.test")
    expect(page.locator("main")).to_contain_text("Need help? Write to help@acme.test.")
    assert_readable(page, "/ with the Acme accent")
    screenshot(page, "sign-in-acme")

    _, mail = ask_for_email(acme, light, "acme.user@example.com")
    assert page.title() == "Check your email · Acme"
    expect(page.get_by_role("link", name="help@acme.test")).to_be_visible()
    assert page.evaluate(background) == "rgb(170, 51, 17)"
    type_code(page, mail.code)
    assert page.title() == "Your account · Acme"
    expect(page.get_by_role("link", name="help@acme.test")).to_be_visible()

    page.emulate_media(color_scheme="dark")
    page.goto(acme.url("/"))
    assert page.evaluate("() => matchMedia('(prefers-color-scheme: dark)').matches") is True
    assert page.evaluate(background) == "rgb(170, 51, 17)"
    assert_readable(page, "/ with the Acme accent, dark")

    # the brand is visible at the top of the card: in the heading, or a logo or name above it
    heading_area = page.evaluate("""() => {
        const h1 = document.querySelector("h1");
        let text = "";
        for (let node = document.querySelector("main").firstElementChild; node; node = node.nextElementSibling) {
            text += " " + (node.innerText || node.getAttribute("alt") || "");
            if (node === h1) break;
        }
        return text.trim();
    }""")
    assert "Acme" in heading_area, f"the product name is not in the page's heading: {heading_area!r}"


def test_content_security_policy_holds(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    said = watch(page)
    answers: list[Response] = []

    first = page.goto(server.url("/"))
    assert first is not None
    answers.append(first)
    expect(page.locator("#passkey-area")).to_be_visible()  # our scripts ran under the policy
    page.get_by_label("Email address").fill("csp.user@example.com")
    answers.append(submit(page, "Email me a sign-in link"))
    mail = email_to(server, "csp.user@example.com")
    answers.append(type_code(page, "000000" if mail.code != "000000" else "111111"))  # the code page, failed
    confirmation = page.goto(mail.link)
    assert confirmation is not None
    answers.append(confirmation)
    answers.append(submit(page, "Sign in"))
    expect(page.get_by_role("button", name="Add a passkey")).to_be_visible()  # account.js ran
    spent = page.goto(mail.link)
    assert spent is not None
    answers.append(spent)

    for answer in answers:
        policy = answer.headers.get("content-security-policy", "")
        where = f"{answer.request.method} {answer.url}"
        directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
        assert directives.get("script-src", directives.get("default-src")) == ["'self'"], (where, policy)
        assert directives.get("style-src", directives.get("default-src")) == ["'self'"], (where, policy)
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, (where, policy)
        assert directives.get("frame-ancestors") == ["'none'"], (where, policy)
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-store", where
    assert csp_violations(said) == [], said
    assert [line for line in said if line.startswith("pageerror")] == []

    # the check can fail: an inline script is refused, and the console says so
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.ran = 1";
                             document.body.append(s); }""")
    assert page.evaluate("() => window.ran") is None
    for _ in range(50):
        if csp_violations(said):
            break
        page.wait_for_timeout(20)
    assert csp_violations(said) != [], said

    # cookie auth with the Origin check: another site's form cannot sign this browser out
    page.route("http://evil.example/**", lambda route: route.fulfill(
        content_type="text/html",
        body=f'<form method="post" action="{server.url("/account/sign-out")}"><button>Go</button></form>',
    ))
    page.goto("http://evil.example/")
    answer = submit(page, "Go")
    assert answer.status == 403
    page.goto(server.url("/account"))
    assert_signed_in(browser, "csp.user@example.com")


def test_phone_viewport_does_not_overflow(server: LiveServer, open_browser: OpenBrowser) -> None:
    phone = open_browser(VIRTUAL_AUTHENTICATOR, **PHONE)
    page = phone.page
    problems = []

    def fits(where: str) -> None:
        found = page.evaluate(OVERFLOW, 390)
        if found["innerWidth"] != 390 or found["scrollWidth"] > found["innerWidth"] or found["wide"]:
            problems.append((where, found))

    address = "a.rather.long.address.for.a.phone@subdomain.example.com"  # 56 characters, still ordinary
    page.goto(server.url("/?redirect_to=" + quote("http://evil.example/a-rather-long-return-address", safe="")))
    fits("/ with an error")
    _, mail = ask_for_email(server, phone, address)
    fits("the code page")
    page.goto(mail.link)
    fits("the confirmation page")
    submit(page, "Sign in")
    submit(page, "Add a passkey")
    sign_in_elsewhere(server, address, FIREFOX_UA)
    page.reload()
    expect(page.locator("li.item")).to_have_count(3)
    fits("/account with a passkey and two sessions")
    screenshot(page, "account-phone")
    assert problems == [], "\n".join(f"{where}: {found}" for where, found in problems)


def test_dark_scheme(server: LiveServer, open_browser: OpenBrowser) -> None:
    """prefers-color-scheme: dark turns the pages dark, every text still readable (the light
    scheme's screenshots and contrast checks are taken by the sign-in and passkey tests)."""
    person = open_browser(VIRTUAL_AUTHENTICATOR, color_scheme="dark")
    page = person.page
    page.goto(server.url("/"))
    expect(page.locator("#passkey-area")).to_be_visible()
    assert page.evaluate("() => matchMedia('(prefers-color-scheme: dark)').matches") is True
    colours = "() => [document.body, document.querySelector('main')].map((el) => getComputedStyle(el).backgroundColor)"
    assert page.evaluate(colours) == ["rgb(15, 18, 22)", "rgb(26, 31, 38)"]
    assert_readable(page, "/ (dark)")
    screenshot(page, "sign-in-dark")

    sign_in_quickly(server, person, "dark.user@example.com")
    page.goto(server.url("/account"))
    submit(page, "Add a passkey")
    expect(page.locator("li.item")).to_have_count(2)
    assert page.evaluate(colours) == ["rgb(15, 18, 22)", "rgb(26, 31, 38)"]
    assert_readable(page, "/account (dark)")
    screenshot(page, "account-dark")


def test_form_action_self_lets_the_303_reach_an_allowed_cross_origin_app(
    start_server: StartServer, open_browser: OpenBrowser
) -> None:
    """The confirmation page's CSP says form-action 'self', and Chromium applies form-action to
    the redirects a form submission follows: the 303 to an allowed app on another origin must
    still get there (issue 15 item 11)."""
    import http.server
    import threading

    class App(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            body = b"<!doctype html><title>The app</title><h1>Welcome back</h1>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    worker = threading.Thread(target=app.serve_forever, daemon=True)
    worker.start()
    try:
        back = f"http://127.0.0.1:{app.server_address[1]}/"
        server = start_server(
            f'[auth]\nallowed_redirects = ["{back}"]\n'
            '[rate_limit]\nmagic_link_per_ip = "1000/1m"\nverify_per_ip = "1000/1m"\n'
        )
        browser = open_browser()
        page = browser.page
        said = watch(page)
        address = "cross.origin@example.com"
        _, mail = ask_for_email(server, browser, address, path="/?redirect_to=" + quote(back + "home", safe=""))
        page.goto(mail.link)
        landed = submit(page, "Sign in")
        assert page.url == back + "home"
        assert landed.status == 200
        expect(page.get_by_role("heading", level=1)).to_have_text("Welcome back")
        # The typed code's form ends in the same 303.
        browser.context.clear_cookies()
        _, mail = ask_for_email(server, browser, address, path="/?redirect_to=" + quote(back + "code", safe=""))
        type_code(page, mail.code)
        assert page.url == back + "code"
        assert csp_violations(said) == []
    finally:
        app.shutdown()
        app.server_close()
        worker.join()
