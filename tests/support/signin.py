"""Helpers for tests of sign-in by email: reading the link and code out of the email a user
gets, and decoding what a sign-in returns.

With `email.transport = "file"` the mail worker writes each email as OUTBOX/<email id>.eml
(`email.file_dir`, default outbox/ beside the database) and then erases the bodies from
`email_queue`. So a test finds the newest queued row for an address (rows stay, with their
status) and waits for that row's .eml file: no race with the worker, no reliance on order of
file times."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from passwordless.config.settings import Config
from tests.support.engine import as_dict, connection
from tests.support.mail import parse, text_of
from tests.support.waiting import until

# TOML sections; concatenate the ones a test needs (each section at most once).
# FILE_MAIL: emails written as .eml files to outbox/ beside the database (see `delivered`).
FILE_MAIL = '[email]\ntransport = "file"\n'
NO_RATE_LIMITS = "[rate_limit]\nenabled = false\n"

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0 signin-tests"

_LINK = re.compile(r"(https?://[^\s\"<>]+/auth/magic-link/verify\?token=)([A-Za-z0-9_\-]+)")
_CODE = re.compile(r"code: (\d{6})\b")


database = connection  # a separate connection to the app's database, on either engine


def rows(config: Config, sql: str, *params: object) -> list[dict[str, Any]]:
    with database(config) as conn:
        return [as_dict(r) for r in conn.execute(sql, params).fetchall()]


def count(config: Config, table: str, where: str = "1 = 1", *params: object) -> int:
    with database(config) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0])


def emails_to(config: Config, address: str) -> list[dict[str, Any]]:
    """Rows queued for an address, oldest first (bodies are erased once sent)."""
    return rows(config, "SELECT * FROM email_queue WHERE to_address = ? ORDER BY created_at, id", address)


@dataclass(frozen=True)
class Mail:
    """An email as delivered: subject, text part and HTML part."""

    to: str
    subject: str
    text: str
    html: str

    @property
    def link(self) -> str:
        return link_in(self.text)

    @property
    def token_and_code(self) -> tuple[str, str]:
        return token_and_code(self.text)


async def delivered(config: Config, email_id: str, timeout: float = 10.0) -> Mail:
    """The email of one queue row, once the worker has written it to the outbox folder."""
    path = Path(config.email.file_dir) / f"{email_id}.eml"
    await until(path.exists, f"email {email_id} delivered to {path.parent}", timeout)
    message = parse(path.read_bytes())
    html = message.get_body(preferencelist=("html",))
    return Mail(
        str(message["To"]), str(message["Subject"]), text_of(message), str(html.get_content()) if html else ""
    )


async def all_mail_sent(config: Config) -> None:
    """Every queued email handed to the transport and marked sent (with its audit row)."""
    await until(lambda: not count(config, "email_queue", "status IN ('pending', 'sending')"), "every email sent")


async def last_email(config: Config, address: str) -> Mail:
    """The newest email to an address, as delivered."""
    queued = emails_to(config, address)
    assert queued, f"no email queued for {address}"
    return await delivered(config, queued[-1]["id"])


def link_in(body: str) -> str:
    """The sign-in link of an email body."""
    match = _LINK.search(body)
    assert match, f"no sign-in link in the email:\n{body}"
    return match[1] + match[2]


def token_and_code(body: str) -> tuple[str, str]:
    link = _LINK.search(body)
    code = _CODE.search(body)
    assert link and code, f"no link or code in the email:\n{body}"
    return link[2], code[1]


async def request_sign_in(
    client: httpx.AsyncClient, config: Config, email: str, redirect_to: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Ask for a link and code for `email` (already normalised) and return (token, code) from the
    email it sends. Call it while the app is running: the mail worker delivers the email."""
    body: dict[str, str] = {"email": email}
    if redirect_to is not None:
        body["redirect_to"] = redirect_to
    before = len(emails_to(config, email))
    response = await client.post("/auth/magic-link", json=body, headers=headers or {"user-agent": USER_AGENT})
    assert response.status_code == 202, response.text
    queued = emails_to(config, email)
    assert len(queued) == before + 1, "exactly one email should have been queued"
    return (await delivered(config, queued[-1]["id"])).token_and_code


async def verify_link(
    client: httpx.AsyncClient, token: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        "/auth/magic-link/verify", json={"token": token}, headers=headers or {"user-agent": USER_AGENT}
    )


async def verify_code(
    client: httpx.AsyncClient, email: str, code: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        "/auth/code/verify", json={"email": email, "code": code}, headers=headers or {"user-agent": USER_AGENT}
    )


async def verify_form(
    client: httpx.AsyncClient, token: str, origin: str | None, headers: dict[str, str] | None = None
) -> httpx.Response:
    """The confirmation page's form post (the browser variant)."""
    sent = {"content-type": "application/x-www-form-urlencoded", "user-agent": USER_AGENT, **(headers or {})}
    if origin is not None:
        sent["origin"] = origin
    return await client.post("/auth/magic-link/verify", content=f"token={token}".encode(), headers=sent)


def claims(access_token: str) -> dict[str, Any]:
    """The payload of a JWT, decoded without checking the signature."""
    payload = access_token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


def bearer(access_token: str) -> dict[str, str]:
    """The Authorization header of an access token."""
    return {"authorization": f"Bearer {access_token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The API's one error shape: {"error": {"code", "message"}} as JSON, with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def other_code(code: str, step: int = 1) -> str:
    """A six-digit code that is not `code` (for 1 <= step < 1,000,000)."""
    return f"{(int(code) + step) % 1_000_000:06d}"
