"""Every value a person or an operator controls comes out of the hosted pages escaped: the
sign-in and code pages, the account page (passkey names, sessions' user agents and addresses,
the email address), redirect_to, and the [ui] product name, logo and support address."""

from __future__ import annotations

import html

import httpx
import pytest

from passwordless.config.settings import Config
from tests.conftest import MakeConfig
from tests.support.app import running
from tests.support.engine import connection
from tests.support.signin import FILE_MAIL, request_sign_in, verify_form

pytestmark = pytest.mark.anyio

PUBLIC = "http://localhost:3000"
SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
PAYLOAD = SCRIPT + BREAKOUT
NO_SPACES = '"><script>alert(1)</script><img/src=x/onerror=alert(1)>'  # for values that refuse whitespace
UI = f"""[ui]
product_name = '{PAYLOAD}'
logo_url = 'https://cdn.example/logo.svg?{NO_SPACES}'
support_email = "it's&x@example.com"
"""
FORM = {"content-type": "application/x-www-form-urlencoded", "origin": PUBLIC}


def assert_escaped(pages: tuple[str, ...], *values: str) -> None:
    """Each page shows each value escaped, and no payload got through raw (not even one the
    page shows only in part, like a user agent reduced to a browser name)."""
    for page in pages:
        for value in values:
            assert value not in page
            assert html.escape(value, quote=True) in page
        for raw in (SCRIPT, BREAKOUT, "<img/src=x"):
            assert raw not in page


@pytest.fixture
def config(make_config: MakeConfig) -> Config:
    return make_config(FILE_MAIL + UI)


async def post_form(client: httpx.AsyncClient, path: str, **fields: str) -> str:
    return (await client.post(path, data=fields, headers=FORM)).text


async def test_ui_settings_and_redirect_to_are_escaped_on_the_sign_in_page(config: Config) -> None:
    redirect_to = f"{PUBLIC}/app?{NO_SPACES}"
    async with running(config) as (_, client):
        page = (await client.get("/", params={"redirect_to": redirect_to})).text
    assert_escaped((page,), PAYLOAD, f"https://cdn.example/logo.svg?{NO_SPACES}", "it's&x@example.com", redirect_to)


async def test_a_typed_email_is_escaped_on_the_sign_in_and_code_pages(config: Config) -> None:
    async with running(config) as (_, client):
        sign_in = await post_form(client, "/", email=PAYLOAD)
        code = await post_form(client, "/sign-in/code", email=PAYLOAD, code="123456")
    assert_escaped((sign_in, code), PAYLOAD)


async def test_the_product_name_is_escaped_on_the_magic_link_pages(config: Config) -> None:
    async with running(config) as (_, client):
        token, _ = await request_sign_in(client, config, "a@example.com")
        confirm = (await client.get("/auth/magic-link/verify", params={"token": token})).text
        failed = (await client.get("/auth/magic-link/verify", params={"token": "spent"})).text
    assert_escaped((confirm, failed), PAYLOAD)


async def test_passkey_names_and_sessions_are_escaped_on_the_account_page(config: Config) -> None:
    async with running(config) as (_, client):
        token, _ = await request_sign_in(client, config, "a@example.com")
        assert (await verify_form(client, token, PUBLIC)).status_code == 303
        with connection(config) as db:
            user_id = db.execute("SELECT id FROM users").fetchone()[0]
            db.execute(
                "INSERT INTO passkeys (id, user_id, credential_id, public_key, name, created_at)"
                " VALUES (?, ?, ?, ?, ?, 1700000000)",
                (PAYLOAD, user_id, b"\x01", b"\x02", PAYLOAD),
            )
            db.execute(
                "INSERT INTO sessions (id, user_id, refresh_token_hash, amr, ip, user_agent, created_at,"
                " last_used_at, expires_at) VALUES (?, ?, ?, '[]', ?, ?, 1700000000, 1700000000, 9999999999)",
                (PAYLOAD, user_id, b"\x09", PAYLOAD, f"Firefox/1 {PAYLOAD}"),
            )
        page = (await client.get("/account")).text
    assert "Firefox" in page
    assert_escaped((page,), PAYLOAD)
