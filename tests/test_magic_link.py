"""Sign in by email: magic link and one-time code (API.md "Sign in by email", "Tokens and
sessions", "Audit log"; CONFIG.md auth.*, rate_limit.*, server.public_url).

Emails stay in the queue with their bodies (file transport, no worker yet), so each test reads
the link and the code exactly as the user would get them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from passwordless.config.settings import Config
from tests.conftest import MakeConfig
from tests.support.app import PEER, FakeClock, running
from tests.support.signin import (
    FILE_MAIL,
    USER_AGENT,
    assert_error,
    claims,
    count,
    emails_to,
    last_email,
    link_in,
    other_code,
    request_sign_in,
    rows,
    verify_code,
    verify_form,
    verify_link,
)

pytestmark = pytest.mark.anyio

PUBLIC = "http://localhost:3000"
TTL = 15 * 60


@pytest.fixture
def config(make_config: MakeConfig) -> Config:
    made = make_config(FILE_MAIL)
    assert made.server.public_url == PUBLIC
    return made


@pytest.fixture
async def client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    async with running(config) as (_, http):
        yield http


# --- POST /auth/magic-link ----------------------------------------------------------------


async def test_request_answers_202_sent_and_queues_a_link_and_code(
    config: Config, client: httpx.AsyncClient
) -> None:
    response = await client.post("/auth/magic-link", json={"email": "a@example.com"})
    assert response.status_code == 202
    assert response.json() == {"status": "sent"}
    assert len(emails_to(config, "a@example.com")) == 1
    email = await last_email(config, "a@example.com")
    assert email.to == "a@example.com"
    assert email.link.startswith(f"{PUBLIC}/auth/magic-link/verify?token=")
    token, code = email.token_and_code
    assert len(token) >= 43  # at least 256 random bits, URL-safe base64
    assert re.fullmatch(r"\d{6}", code)
    assert token in email.html and code in email.html


async def test_known_and_unknown_addresses_get_identical_answers(
    config: Config, client: httpx.AsyncClient
) -> None:
    token, _ = await request_sign_in(client, config, "known@example.com")
    assert (await verify_link(client, token)).status_code == 200
    assert rows(config, "SELECT email FROM users") == [{"email": "known@example.com"}]

    known = await client.post("/auth/magic-link", json={"email": "known@example.com"})
    unknown = await client.post("/auth/magic-link", json={"email": "nobody@example.com"})

    def visible(r: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
        headers = sorted((k, v) for k, v in r.headers.items() if k not in ("x-request-id", "date"))
        return r.status_code, r.content, headers

    assert visible(known) == visible(unknown)
    assert known.status_code == 202


async def test_email_is_trimmed_and_lower_cased(config: Config, client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/magic-link", json={"email": " A@Example.COM "})
    assert response.status_code == 202
    assert len(emails_to(config, "a@example.com")) == 1
    assert rows(config, "SELECT email FROM sign_in_tickets") == [{"email": "a@example.com"}]
    _, code = (await last_email(config, "a@example.com")).token_and_code
    # the code is accepted for the address however it is typed
    signed_in = await verify_code(client, "  a@EXAMPLE.com", code)
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["email"] == "a@example.com"


BAD_EMAILS = [
    "",
    "   ",
    "a.example.com",
    "a@@example.com",
    "a@b@example.com",
    "a b@example.com",
    "a@exa mple.com",
    "a@example",
    "@example.com",
    "a@",
    "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com",  # 312 characters
    "a@b.com\r\nBcc: x@y.com",
    "a@b.com\nBcc: x@y.com",
    "a@b.com,x@y.com",
    '"a"@example.com',
    "<a@example.com>",
    "A <a@example.com>",
    "a@example.com>",
    "a@exa\x00mple.com",
]


@pytest.mark.parametrize("email", BAD_EMAILS)
async def test_bad_emails_are_400_invalid_email_and_store_nothing(
    config: Config, client: httpx.AsyncClient, email: str
) -> None:
    response = await client.post("/auth/magic-link", json={"email": email})
    if "\x00" in email:
        assert_error(response, 400, "invalid_request")  # refused even before the address is read
    else:
        assert_error(response, 400, "invalid_email")
    assert count(config, "sign_in_tickets") == 0
    assert count(config, "email_queue") == 0


async def test_an_address_of_254_characters_is_accepted_and_255_refused(client: httpx.AsyncClient) -> None:
    local = "a" * 64
    domain_254 = ".".join(["b" * 61, "c" * 61, "d" * 61]) + ".com"  # 61*3 + 2 + 4 = 189
    longest = local + "@" + domain_254  # 64 + 1 + 189 = 254
    assert len(longest) == 254
    assert (await client.post("/auth/magic-link", json={"email": longest})).status_code == 202
    too_long = local + "@" + "e" + domain_254
    assert len(too_long) == 255
    assert_error(await client.post("/auth/magic-link", json={"email": too_long}), 400, "invalid_email")


@pytest.mark.parametrize(
    "body",
    [
        {"email": 123},
        {"email": ["a@example.com"]},
        {"email": {"address": "a@example.com"}},
        {"email": True},
        {"email": None},
        {},
        {"email": "a@example.com", "redirect_to": 5},
        ["a@example.com"],
        "a@example.com",
    ],
)
async def test_wrong_json_types_are_400_invalid_request(
    config: Config, client: httpx.AsyncClient, body: object
) -> None:
    assert_error(await client.post("/auth/magic-link", json=body), 400, "invalid_request")
    assert count(config, "email_queue") == 0


async def test_unknown_field_is_400(config: Config, client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/magic-link", json={"email": "a@example.com", "admin": True})
    assert_error(response, 400, "invalid_request")
    assert "admin" in response.json()["error"]["message"]
    assert count(config, "email_queue") == 0


@pytest.mark.parametrize("raw", [b'{"email": "a@example.com"', b"not json", b"", b'{"email": "a@example.com"}x'])
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/auth/magic-link", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_request")


async def test_text_plain_is_415(config: Config, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/magic-link", content=b'{"email": "a@example.com"}', headers={"content-type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")
    assert count(config, "email_queue") == 0


async def test_ticket_email_and_audit_row_are_stored_together_and_no_secret_in_clear(
    config: Config, client: httpx.AsyncClient
) -> None:
    response = await client.post("/auth/magic-link", json={"email": "a@example.com"}, headers={"user-agent": USER_AGENT})
    assert response.status_code == 202
    assert count(config, "sign_in_tickets") == 1
    assert count(config, "email_queue") == 1
    assert count(config, "audit_logs", "event_type = 'magic_link_requested'") == 1
    token, code = (await last_email(config, "a@example.com")).token_and_code

    [ticket] = rows(config, "SELECT * FROM sign_in_tickets")
    assert ticket["token_hash"] == hashlib.sha256(token.encode()).digest()
    assert ticket["code_hash"] != hashlib.sha256(code.encode()).digest()  # keyed, not a bare hash
    for table in ("sign_in_tickets", "audit_logs"):
        for row in rows(config, f"SELECT * FROM {table}"):
            for column, value in row.items():
                if column == "created_at" or column == "expires_at":
                    continue
                blob = value if isinstance(value, bytes) else str(value).encode()
                assert token.encode() not in blob, (table, column)
                assert code.encode() not in blob, (table, column)


@pytest.mark.parametrize("trusted", [False, True])
async def test_link_is_built_from_public_url_not_from_host_headers(make_config: MakeConfig, trusted: bool) -> None:
    extra = f'[server]\ntrusted_proxies = ["{PEER[0]}/32"]\n' if trusted else ""
    config = make_config(FILE_MAIL + extra)
    async with running(config) as (_, client):
        response = await client.post(
            "/auth/magic-link",
            json={"email": "a@example.com"},
            headers={"host": "evil.example", "x-forwarded-host": "evil.example", "x-forwarded-proto": "https"},
        )
        assert response.status_code == 202
        email = await last_email(config, "a@example.com")
    assert email.link.startswith(f"{PUBLIC}/auth/magic-link/verify?token=")
    assert link_in(email.html).startswith(f"{PUBLIC}/auth/magic-link/verify?token=")
    assert "evil.example" not in email.text + email.html


async def test_without_signup_unknown_addresses_get_no_email_but_known_ones_do(make_config: MakeConfig) -> None:
    open_config = make_config(FILE_MAIL)
    async with running(open_config) as (_, client):
        token, _ = await request_sign_in(client, open_config, "known@example.com")
        assert (await verify_link(client, token)).status_code == 200

    closed = make_config(FILE_MAIL + "[auth]\nallow_signup = false\n")
    assert closed.database.path == open_config.database.path
    async with running(closed) as (_, client):
        unknown = await client.post("/auth/magic-link", json={"email": "stranger@example.com"})
        known = await client.post("/auth/magic-link", json={"email": "known@example.com"})
    assert unknown.status_code == 202 and unknown.json() == {"status": "sent"}
    assert known.status_code == 202 and known.content == unknown.content
    assert emails_to(closed, "stranger@example.com") == []
    assert len(emails_to(closed, "known@example.com")) == 2
    assert rows(closed, "SELECT email FROM users") == [{"email": "known@example.com"}]


async def test_without_signup_the_known_user_can_still_sign_in(make_config: MakeConfig) -> None:
    open_config = make_config(FILE_MAIL)
    async with running(open_config) as (_, client):
        token, _ = await request_sign_in(client, open_config, "known@example.com")
        first = await verify_link(client, token)
        assert first.status_code == 200
    closed = make_config(FILE_MAIL + "[auth]\nallow_signup = false\n")
    async with running(closed) as (_, client):
        token, code = await request_sign_in(client, closed, "known@example.com")
        again = await verify_code(client, "known@example.com", code)
    assert again.status_code == 200, again.text
    assert again.json()["user"]["id"] == first.json()["user"]["id"]


# --- GET /auth/magic-link/verify ------------------------------------------------------------


async def test_confirmation_page_shows_a_form_and_does_not_spend_the_link(
    config: Config, client: httpx.AsyncClient
) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com")
    link = (await last_email(config, "a@example.com")).link
    for _ in range(2):  # a mail scanner, then the user
        page = await client.get(link)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert re.search(r'<form[^>]*method="post"[^>]*action="/auth/magic-link/verify"', html)
        assert f'name="token" value="{token}"' in html
        assert "<button" in html
        assert "no-store" in page.headers["cache-control"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
    assert count(config, "sessions") == 0
    signed_in = await verify_link(client, token)
    assert signed_in.status_code == 200, signed_in.text


async def test_confirmation_page_for_an_unknown_token_says_the_link_no_longer_works(
    client: httpx.AsyncClient,
) -> None:
    forged = "Zm9yZ2VkLXRva2VuLXRoYXQtZG9lcy1ub3QtZXhpc3QtYXQtYWxs"
    page = await client.get("/auth/magic-link/verify", params={"token": forged})
    assert page.headers["content-type"].startswith("text/html")
    assert "expired or was already used" in page.text
    assert forged not in page.text
    assert "<form" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    missing = await client.get("/auth/magic-link/verify")
    assert missing.headers["content-type"].startswith("text/html")
    assert "expired or was already used" in missing.text


async def test_confirmation_page_for_a_used_link_says_it_was_used(
    config: Config, client: httpx.AsyncClient
) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com")
    assert (await verify_link(client, token)).status_code == 200
    page = await client.get("/auth/magic-link/verify", params={"token": token})
    assert page.headers["content-type"].startswith("text/html")
    assert "expired or was already used" in page.text
    assert "<form" not in page.text


# --- POST /auth/magic-link/verify (JSON) ------------------------------------------------------


async def test_link_verify_returns_a_token_response_once(config: Config, client: httpx.AsyncClient) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com")
    response = await verify_link(client, token)
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers["cache-control"]
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "user"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert isinstance(body["refresh_token"], str) and len(body["refresh_token"]) >= 43
    assert set(body["user"]) == {"id", "email"} and body["user"]["email"] == "a@example.com"
    me = await client.get("/auth/me", headers={"authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["id"] == body["user"]["id"]

    assert_error(await verify_link(client, token), 401, "invalid_token")


async def test_unknown_token_is_401_invalid_token(client: httpx.AsyncClient) -> None:
    assert_error(await verify_link(client, "x" * 43), 401, "invalid_token")


@pytest.mark.parametrize("body", [{}, {"token": 5}, {"token": None}, {"token": "t", "email": "a@example.com"}])
async def test_link_verify_with_a_malformed_body_is_400(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/auth/magic-link/verify", json=body)
    assert_error(response, 400, "invalid_request")


async def test_link_verify_with_text_plain_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/magic-link/verify", content=b'{"token": "x"}', headers={"content-type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")


async def test_one_link_verified_twenty_times_at_once_signs_in_once(
    config: Config, client: httpx.AsyncClient
) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com")
    responses = await asyncio.gather(*(verify_link(client, token) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 19, statuses
    for r in responses:
        if r.status_code == 401:
            assert_error(r, 401, "invalid_token")
    assert count(config, "sessions") == 1
    assert count(config, "users") == 1


async def test_one_code_verified_twenty_times_at_once_signs_in_once(
    config: Config, client: httpx.AsyncClient
) -> None:
    _, code = await request_sign_in(client, config, "a@example.com")
    responses = await asyncio.gather(*(verify_code(client, "a@example.com", code) for _ in range(20)))
    assert sorted(r.status_code for r in responses) == [200] + [401] * 19
    assert count(config, "sessions") == 1


# --- link and code are one ticket -------------------------------------------------------------


async def test_using_the_code_spends_the_link(config: Config, client: httpx.AsyncClient) -> None:
    token, code = await request_sign_in(client, config, "a@example.com")
    assert (await verify_code(client, "a@example.com", code)).status_code == 200
    assert_error(await verify_link(client, token), 401, "invalid_token")
    page = await client.get("/auth/magic-link/verify", params={"token": token})
    assert "expired or was already used" in page.text


async def test_using_the_link_spends_the_code(config: Config, client: httpx.AsyncClient) -> None:
    token, code = await request_sign_in(client, config, "a@example.com")
    assert (await verify_link(client, token)).status_code == 200
    assert_error(await verify_code(client, "a@example.com", code), 401, "invalid_code")
    assert count(config, "sessions") == 1


# --- POST /auth/code/verify -------------------------------------------------------------------


async def test_code_verify_returns_a_token_response(config: Config, client: httpx.AsyncClient) -> None:
    _, code = await request_sign_in(client, config, "a@example.com")
    response = await verify_code(client, "a@example.com", code)
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers["cache-control"]
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["user"]["email"] == "a@example.com"
    assert isinstance(body["refresh_token"], str) and body["refresh_token"]
    assert_error(await verify_code(client, "a@example.com", code), 401, "invalid_code")


async def test_wrong_code_is_401_invalid_code(config: Config, client: httpx.AsyncClient) -> None:
    _, code = await request_sign_in(client, config, "a@example.com")
    assert_error(await verify_code(client, "a@example.com", other_code(code)), 401, "invalid_code")
    # the right code for another address is no good either
    assert_error(await verify_code(client, "b@example.com", code), 401, "invalid_code")
    assert (await verify_code(client, "a@example.com", code)).status_code == 200


async def test_the_code_still_works_after_one_wrong_code_fewer_than_the_limit(
    config: Config, client: httpx.AsyncClient
) -> None:
    _, code = await request_sign_in(client, config, "a@example.com")
    for step in range(1, 5):
        assert_error(await verify_code(client, "a@example.com", other_code(code, step)), 401, "invalid_code")
    assert (await verify_code(client, "a@example.com", code)).status_code == 200


async def test_after_five_wrong_codes_the_ticket_is_burned(config: Config, client: httpx.AsyncClient) -> None:
    token, code = await request_sign_in(client, config, "a@example.com")
    for step in range(1, 6):
        assert_error(await verify_code(client, "a@example.com", other_code(code, step)), 401, "invalid_code")
    assert_error(await verify_code(client, "a@example.com", code), 401, "invalid_code")
    assert_error(await verify_link(client, token), 401, "invalid_token")  # one ticket: both keys gone
    assert count(config, "sessions") == 0


async def test_code_max_attempts_is_configurable(make_config: MakeConfig) -> None:
    config = make_config(FILE_MAIL + "[auth]\ncode_max_attempts = 2\n")
    async with running(config) as (_, client):
        _, code = await request_sign_in(client, config, "a@example.com")
        for step in (1, 2):
            assert_error(await verify_code(client, "a@example.com", other_code(code, step)), 401, "invalid_code")
        assert_error(await verify_code(client, "a@example.com", code), 401, "invalid_code")


async def test_with_two_live_tickets_either_code_works_and_neither_cancels_the_other(
    config: Config, client: httpx.AsyncClient
) -> None:
    token1, code1 = await request_sign_in(client, config, "a@example.com")
    token2, code2 = await request_sign_in(client, config, "a@example.com")
    _, code3 = await request_sign_in(client, config, "a@example.com")
    assert (await verify_code(client, "a@example.com", code1)).status_code == 200  # the older one
    assert (await verify_code(client, "a@example.com", code3)).status_code == 200  # the newest
    assert (await verify_link(client, token2)).status_code == 200  # the middle one, by link
    assert_error(await verify_link(client, token1), 401, "invalid_token")
    assert_error(await verify_code(client, "a@example.com", code2), 401, "invalid_code")


@pytest.mark.parametrize("code", ["12ab56", "12345", "1234567", "", " 123456", "١٢٣٤٥٦"])
async def test_malformed_code_is_400(client: httpx.AsyncClient, code: str) -> None:
    assert_error(await verify_code(client, "a@example.com", code), 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [{"email": "a@example.com"}, {"code": "123456"}, {"email": "a@example.com", "code": 123456},
     {"email": "a@example.com", "code": "123456", "token": "x"}],
)
async def test_code_verify_with_a_malformed_body_is_400(client: httpx.AsyncClient, body: object) -> None:
    assert_error(await client.post("/auth/code/verify", json=body), 400, "invalid_request")


async def test_code_verify_with_a_bad_email_is_400_invalid_email(client: httpx.AsyncClient) -> None:
    assert_error(await verify_code(client, "not-an-email", "123456"), 400, "invalid_email")


# --- expiry -----------------------------------------------------------------------------------


async def test_link_and_code_work_until_the_ticket_expires(config: Config) -> None:
    clock = FakeClock(1_800_000_000.0)
    async with running(config, clock=clock) as (_, client):
        token1, _ = await request_sign_in(client, config, "a@example.com")
        _, code2 = await request_sign_in(client, config, "b@example.com")
        token3, code3 = await request_sign_in(client, config, "c@example.com")
        clock.advance(TTL - 1)
        page = await client.get("/auth/magic-link/verify", params={"token": token3})
        assert page.status_code == 200 and "<form" in page.text
        assert (await verify_link(client, token1)).status_code == 200
        assert (await verify_code(client, "b@example.com", code2)).status_code == 200
        clock.advance(2)  # TTL + 1 since the request
        page = await client.get("/auth/magic-link/verify", params={"token": token3})
        assert "expired or was already used" in page.text and "<form" not in page.text
        assert_error(await verify_link(client, token3), 401, "invalid_token")
        assert_error(await verify_code(client, "c@example.com", code3), 401, "invalid_code")


async def test_magic_link_ttl_is_configurable(make_config: MakeConfig) -> None:
    config = make_config(FILE_MAIL + '[auth]\nmagic_link_ttl = "2m"\n')
    clock = FakeClock(1_800_000_000.0)
    async with running(config, clock=clock) as (_, client):
        token, code = await request_sign_in(client, config, "a@example.com")
        assert "2 minutes" in (await last_email(config, "a@example.com")).text
        clock.advance(121)
        assert_error(await verify_link(client, token), 401, "invalid_token")
        assert_error(await verify_code(client, "a@example.com", code), 401, "invalid_code")


# --- users ------------------------------------------------------------------------------------


async def test_first_sign_in_creates_the_user_and_the_next_reuses_it(config: Config, client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/magic-link", json={"email": " New@Example.COM "})
    assert response.status_code == 202
    assert count(config, "users") == 0  # asking for a link creates nobody
    token, _ = (await last_email(config, "new@example.com")).token_and_code
    first = await verify_link(client, token)
    assert first.status_code == 200
    user_id = first.json()["user"]["id"]
    assert rows(config, "SELECT id, email FROM users") == [{"id": user_id, "email": "new@example.com"}]
    created = rows(config, "SELECT * FROM audit_logs WHERE event_type = 'user_created'")
    assert len(created) == 1
    assert created[0]["user_id"] == user_id and created[0]["email"] == "new@example.com"
    assert created[0]["success"] == 1

    _, code = await request_sign_in(client, config, "new@example.com")
    second = await verify_code(client, "NEW@example.com", code)
    assert second.status_code == 200
    assert second.json()["user"] == {"id": user_id, "email": "new@example.com"}
    assert count(config, "users") == 1
    assert count(config, "audit_logs", "event_type = 'user_created'") == 1
    assert claims(second.json()["access_token"])["sub"] == user_id


# --- the browser variant: form post from the confirmation page ---------------------------------


def session_cookie(response: httpx.Response) -> tuple[str, str]:
    """(value, the whole Set-Cookie line) of the pl_session cookie a response sets."""
    lines = [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("pl_session=")]
    assert len(lines) == 1, response.headers
    value = lines[0].split(";", 1)[0].split("=", 1)[1]
    return value, lines[0]


async def test_form_verify_sets_a_session_cookie_and_redirects_to_account(
    config: Config, client: httpx.AsyncClient
) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com")
    response = await verify_form(client, token, origin=PUBLIC)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/account"
    value, line = session_cookie(response)
    attributes = [part.strip().lower() for part in line.split(";")[1:]]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert "secure" not in attributes  # public_url is http here
    assert value
    assert "no-store" in response.headers["cache-control"]
    assert count(config, "sessions") == 1

    client.cookies.clear()
    me = await client.get("/auth/me", headers={"cookie": f"pl_session={value}"})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "a@example.com"
    assert_error(await client.get("/auth/me"), 401, "unauthorized")
    forged = await client.get("/auth/me", headers={"cookie": f"pl_session={value[:-2]}xx"})
    assert forged.status_code == 401


@pytest.mark.parametrize("origin", [None, "http://evil.example", "null", "http://localhost:3001", "https://localhost:3000"])
async def test_form_verify_from_another_origin_is_403_and_leaves_the_link_alive(
    config: Config, client: httpx.AsyncClient, origin: str | None
) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com")
    response = await verify_form(client, token, origin=origin)
    assert_error(response, 403, "forbidden")
    assert "set-cookie" not in response.headers
    assert count(config, "sessions") == 0
    assert (await verify_link(client, token)).status_code == 200


@pytest.mark.parametrize("bad", ["unknown-token-" + "x" * 30, "", "x" * 300])
async def test_form_verify_with_a_bad_token_is_an_html_401_page(client: httpx.AsyncClient, bad: str) -> None:
    response = await verify_form(client, bad, origin=PUBLIC)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "expired or was already used" in response.text
    assert "set-cookie" not in response.headers
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_form_verify_with_extra_fields_is_still_an_html_page(client: httpx.AsyncClient) -> None:
    # a form post carrying more fields than expected (a browser extension, a crafted page)
    response = await client.post(
        "/auth/magic-link/verify",
        content=b"a=1&b=2&c=3&d=4&e=5&token=unknown-token",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": PUBLIC},
    )
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "expired or was already used" in response.text


async def test_with_an_https_public_url_the_cookie_is_secure_and_host_bound(make_config: MakeConfig) -> None:
    public = "https://auth.example.com"
    config = make_config(FILE_MAIL + f'[server]\npublic_url = "{public}"\n')
    async with running(config) as (_, client):
        token, _ = await request_sign_in(client, config, "a@example.com")
        assert (await last_email(config, "a@example.com")).link.startswith(public + "/auth/")
        response = await verify_form(client, token, origin=public)
    assert response.status_code == 303
    [line] = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    assert line.startswith("__Host-pl_session=")
    attributes = [part.strip().lower() for part in line.split(";")[1:]]
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(attributes)
    assert not any(a.startswith("domain=") for a in attributes)


async def test_form_verify_of_a_spent_link_is_an_html_401_page(config: Config, client: httpx.AsyncClient) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com")
    assert (await verify_form(client, token, origin=PUBLIC)).status_code == 303
    again = await verify_form(client, token, origin=PUBLIC)
    assert again.status_code == 401
    assert again.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in again.headers


# --- redirect_to ------------------------------------------------------------------------------


async def test_allowed_redirect_is_where_the_form_verify_sends_the_browser(
    config: Config, client: httpx.AsyncClient
) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com", redirect_to=f"{PUBLIC}/after?tab=keys")
    assert rows(config, "SELECT redirect_to FROM sign_in_tickets") == [{"redirect_to": f"{PUBLIC}/after?tab=keys"}]
    response = await verify_form(client, token, origin=PUBLIC)
    assert response.status_code == 303
    assert response.headers["location"] == f"{PUBLIC}/after?tab=keys"


REFUSED_BY_DEFAULT = [
    "https://evil.example@localhost:3000/",
    "http://evil.example@localhost:3000/",
    "http://user:pass@localhost:3000/after",
    "http://localhost:3000@evil.example/",
    "http://evil.example/",
    "http://localhost.evil.example/",
    "https://localhost:3000/",
    "http://localhost:3001/",
    "http://localhost/",
    "//evil.example/",
    "/\\evil.example/",
    "javascript:alert(1)",
    "data:text/html,hi",
    "http://localhost:3000/../x",
    "http://localhost:3000/after/../../x",
    "http://localhost:3000/%2e%2e/x",
    "http://localhost:3000/./x",
    "http://localhost:3000\\@evil.example/",
    "http://localhost:3000/\\evil.example",
    "http:\\\\evil.example\\",
    "http://localhost:3000/a b",
    "http://localhost:3000/\r\nx",
    "/after",
    "",
]


@pytest.mark.parametrize("redirect_to", REFUSED_BY_DEFAULT)
async def test_redirects_outside_the_default_allowlist_are_refused(
    config: Config, client: httpx.AsyncClient, redirect_to: str
) -> None:
    response = await client.post("/auth/magic-link", json={"email": "a@example.com", "redirect_to": redirect_to})
    assert_error(response, 400, "redirect_not_allowed")
    assert count(config, "sign_in_tickets") == 0
    assert count(config, "email_queue") == 0


@pytest.mark.parametrize("redirect_to", [f"{PUBLIC}/", f"{PUBLIC}/after", f"{PUBLIC}/account/keys?x=1#top"])
async def test_redirects_under_public_url_are_allowed_by_default(
    config: Config, client: httpx.AsyncClient, redirect_to: str
) -> None:
    response = await client.post("/auth/magic-link", json={"email": "a@example.com", "redirect_to": redirect_to})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("redirect_to", "allowed"),
    [
        ("https://app.example.com/after/", True),
        ("https://app.example.com/after/done?x=1", True),
        ("https://APP.example.com/after/done", True),
        ("https://app.example.com/other", False),
        ("https://app.example.com/afterwards", False),
        ("https://app.example.com/", False),
        ("https://app.example.com/after/../other", False),
        ("https://app.example.com/after/%2E%2E/other", False),
        ("http://app.example.com/after/x", False),
        ("https://app.example.com:8443/after/x", False),
        ("https://evil.example/after/x", False),
        ("https://app.example.com.evil.example/after/x", False),
        ("https://evil.example@app.example.com/after/x", False),
        ("https://app.example.com/after/\\..\\other", False),
    ],
)
async def test_a_configured_prefix_allows_only_what_is_under_it(
    make_config: MakeConfig, redirect_to: str, allowed: bool
) -> None:
    config = make_config(FILE_MAIL + '[auth]\nallowed_redirects = ["https://app.example.com/after/"]\n')
    async with running(config) as (_, client):
        response = await client.post("/auth/magic-link", json={"email": "a@example.com", "redirect_to": redirect_to})
    if allowed:
        assert response.status_code == 202, response.text
    else:
        assert_error(response, 400, "redirect_not_allowed")


async def test_a_configured_redirect_comes_back_as_the_form_location(make_config: MakeConfig) -> None:
    config = make_config(FILE_MAIL + '[auth]\nallowed_redirects = ["https://app.example.com/after/"]\n')
    async with running(config) as (_, client):
        token, _ = await request_sign_in(client, config, "a@example.com", redirect_to="https://app.example.com/after/x")
        response = await verify_form(client, token, origin=PUBLIC)
    assert response.status_code == 303
    assert response.headers["location"] == "https://app.example.com/after/x"


# --- audit log and logs -------------------------------------------------------------------------


def audit_rows(config: Config) -> list[dict[str, Any]]:
    return rows(config, "SELECT * FROM audit_logs ORDER BY id")


async def test_audit_rows_carry_ip_user_agent_and_outcome(make_config: MakeConfig) -> None:
    config = make_config(FILE_MAIL)
    peer = ("198.51.100.23", 41000)
    async with running(config, peer=peer) as (_, client):
        token, _ = await request_sign_in(client, config, "a@example.com")
        assert (await verify_link(client, token)).status_code == 200
        assert (await verify_link(client, token)).status_code == 401
        _, code = await request_sign_in(client, config, "a@example.com")
        assert (await verify_code(client, "a@example.com", other_code(code))).status_code == 401
        assert (await verify_code(client, "a@example.com", code)).status_code == 200

    # the mail worker adds its own rows (email_sent); these are the rows of the sign-in flows
    events = [e for e in audit_rows(config) if not e["event_type"].startswith("email_")]
    seen = [(e["event_type"], e["success"]) for e in events]
    assert seen == [
        ("magic_link_requested", 1),
        ("user_created", 1),
        ("magic_link_verified", 1),
        ("magic_link_failed", 0),
        ("magic_link_requested", 1),
        ("code_failed", 0),
        ("code_verified", 1),
    ], seen
    user_id = rows(config, "SELECT id FROM users")[0]["id"]
    for event in events:
        assert event["ip"] == peer[0], event
        assert event["user_agent"] == USER_AGENT, event
        assert json.loads(event["details"]) is not None
    by_type = {e["event_type"]: e for e in events}
    for kind in ("user_created", "magic_link_verified", "code_verified"):
        assert by_type[kind]["user_id"] == user_id
        assert by_type[kind]["email"] == "a@example.com"
    assert by_type["code_failed"]["email"] == "a@example.com"


def _secrets_in(text: str, token: str, code: str) -> list[str]:
    found = []
    if token in text:
        found.append("token")
    if re.search(rf"(?<!\d){code}(?!\d)", text):
        found.append("code")
    return found


async def test_no_token_or_code_reaches_the_audit_log_or_the_logs(
    make_config: MakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = make_config(FILE_MAIL)
    async with running(config) as (_, client):
        link_token, link_code = await request_sign_in(client, config, "a@example.com")
        await client.get(f"/auth/magic-link/verify?token={link_token}")
        await verify_form(client, link_token, origin=None)  # refused: 403
        assert (await verify_form(client, link_token, origin=PUBLIC)).status_code == 303
        await verify_link(client, link_token)  # spent: magic_link_failed
        await verify_code(client, "a@example.com", link_code)  # spent: code_failed
        code_token, code = await request_sign_in(client, config, "a@example.com")
        await verify_code(client, "a@example.com", other_code(code))
        assert (await verify_code(client, "a@example.com", code)).status_code == 200
        await client.get(f"/auth/magic-link/verify?token={code_token}")
        await verify_link(client, code_token)

    checked = 0
    for event in audit_rows(config):
        text = json.dumps({k: v for k, v in event.items() if k != "created_at"})
        for token, secret_code in ((link_token, link_code), (code_token, code)):
            assert not _secrets_in(text, token, secret_code), event
        checked += 1
    assert checked >= 8

    standard = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
    # the test's own HTTP client (httpx) logs the URLs it asks for; only the server's lines count
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert sum(r.name == "passwordless.access" for r in server_records) >= 10, "requests should be logged"
    for record in server_records:
        extras = {k: v for k, v in vars(record).items() if k not in standard}
        text = record.getMessage() + " " + json.dumps(extras, default=str) + " " + (record.exc_text or "")
        for token, secret_code in ((link_token, link_code), (code_token, code)):
            assert not _secrets_in(text, token, secret_code), (record.name, text)


# --- the access token ---------------------------------------------------------------------------


async def test_access_token_amr_says_how_the_user_signed_in(config: Config, client: httpx.AsyncClient) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com")
    by_link = claims((await verify_link(client, token)).json()["access_token"])
    _, code = await request_sign_in(client, config, "a@example.com")
    by_code = claims((await verify_code(client, "a@example.com", code)).json()["access_token"])
    assert by_link["amr"] == ["email"]
    assert by_code["amr"] == ["otp"]
    for c in (by_link, by_code):
        assert c["email"] == "a@example.com"
        assert c["iss"] == PUBLIC
        assert c["exp"] - c["iat"] == 900
    assert by_link["sid"] != by_code["sid"]


async def test_form_sign_in_session_records_amr_email(config: Config, client: httpx.AsyncClient) -> None:
    token, _ = await request_sign_in(client, config, "a@example.com")
    assert (await verify_form(client, token, origin=PUBLIC)).status_code == 303
    [session] = rows(config, "SELECT amr, ip, user_agent FROM sessions")
    assert json.loads(session["amr"]) == ["email"]
    assert session["ip"] == PEER[0] and session["user_agent"] == USER_AGENT
