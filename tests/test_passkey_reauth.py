"""Adding a passkey (issue 15, items 1 and 4; API.md "Passkeys (WebAuthn)"): a stolen access
token or cookie cannot make itself a permanent key. It needs a sign-in within
auth.reauth_window (a refresh does not count), the owner is emailed about every passkey added
(queued with the passkey, delivered through a real SMTP server), a user holds at most
webauthn.max_passkeys, and a credential ID over 1023 bytes is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage

import pytest

from tests.conftest import MakeConfig
from tests.support.app import FakeClock
from tests.support.authenticator import SoftAuthenticator
from tests.support.mail import Sink, start_sink, text_of
from tests.support.signin import FILE_MAIL, NO_RATE_LIMITS, assert_error, bearer, emails_to, rows
from tests.test_passkeys import ORIGIN, PUBLIC, Server, cookie_sign_in

pytestmark = pytest.mark.anyio

WINDOW = 600  # the default auth.reauth_window, 10 minutes
ADDED = "A passkey was added to your account"


@asynccontextmanager
async def server_with(make_config: MakeConfig, extra: str = "") -> AsyncIterator[Server]:
    async with Server.serving(make_config(FILE_MAIL + NO_RATE_LIMITS + extra), FakeClock()) as server:
        yield server


async def test_an_old_sign_in_cannot_add_a_passkey_and_a_refresh_does_not_make_it_new(
    make_config: MakeConfig,
) -> None:
    async with server_with(make_config) as server:
        signed_in = await server.sign_in("ada@example.com")
        headers = bearer(signed_in["access_token"])
        options = await server.register_options(headers)  # fresh: allowed
        credential = SoftAuthenticator().make_credential(options, ORIGIN)

        server.clock.advance(WINDOW + 1)
        r = await server.http.post("/auth/refresh", json={"refresh_token": signed_in["refresh_token"]})
        assert r.status_code == 200, r.text
        refreshed = bearer(r.json()["access_token"])  # a brand-new access token of the same old sign-in

        for stale in (headers, refreshed):
            r = await server.http.post("/auth/passkeys/register/options", json={}, headers=stale)
            assert_error(r, 403, "reauthentication_required")
            assert r.headers["www-authenticate"] == f'Bearer error="insufficient_user_authentication", max_age={WINDOW}'
        assert_error(await server.register_verify(refreshed, credential), 403, "reauthentication_required")
        assert rows(server.config, "SELECT * FROM passkeys") == []
        assert [e for e in emails_to(server.config, "ada@example.com") if e["subject"] == ADDED] == []

        # Signing in again (a new session) is recent enough.
        await server.register(await server.bearer("ada@example.com"), SoftAuthenticator())
        assert len(rows(server.config, "SELECT * FROM passkeys")) == 1


async def test_the_window_comes_from_config_and_holds_for_the_session_cookie(make_config: MakeConfig) -> None:
    async with server_with(make_config, '[auth]\nreauth_window = "1m"\n') as server:
        jar = {**await cookie_sign_in(server, "ada@example.com"), "origin": PUBLIC}

        server.clock.advance(59)
        options = await server.register_options(jar)
        server.clock.advance(2)
        r = await server.http.post("/auth/passkeys/register/options", json={}, headers=jar)
        assert_error(r, 403, "reauthentication_required")
        credential = SoftAuthenticator().make_credential(options, ORIGIN)
        assert_error(await server.register_verify(jar, credential), 403, "reauthentication_required")
        assert rows(server.config, "SELECT * FROM passkeys") == []


@pytest.mark.parametrize(("length", "status"), [(1023, 201), (1024, 400)])
async def test_a_credential_id_over_1023_bytes_is_refused(make_config: MakeConfig, length: int, status: int) -> None:
    async with server_with(make_config) as server:
        headers = await server.bearer("ada@example.com")
        options = await server.register_options(headers)
        credential = SoftAuthenticator().make_credential(options, ORIGIN, credential_id=b"\x07" * length)
        response = await server.register_verify(headers, credential)
        assert response.status_code == status, response.text
        if status == 400:
            assert_error(response, 400, "invalid_request")
            assert rows(server.config, "SELECT * FROM passkeys") == []


async def test_a_user_holds_at_most_max_passkeys_even_when_verifies_race(make_config: MakeConfig) -> None:
    async with server_with(make_config, "[webauthn]\nmax_passkeys = 2\n") as server:
        headers = await server.bearer("ada@example.com")
        await server.register(headers, SoftAuthenticator())
        # Two ceremonies started while one place is left; both verify at once.
        first, second = [await server.register_options(headers) for _ in range(2)]
        answers = await asyncio.gather(
            server.register_verify(headers, SoftAuthenticator().make_credential(first, ORIGIN)),
            server.register_verify(headers, SoftAuthenticator().make_credential(second, ORIGIN)),
        )
        assert sorted(r.status_code for r in answers) == [201, 409]
        assert_error(next(r for r in answers if r.status_code == 409), 409, "passkey_limit")
        assert len(await server.passkeys(headers)) == 2

        r = await server.http.post("/auth/passkeys/register/options", json={}, headers=headers)
        assert_error(r, 409, "passkey_limit")
        added = [e for e in emails_to(server.config, "ada@example.com") if e["subject"] == ADDED]
        assert len(added) == 2, "one email per passkey saved, none for the refused one"

        # Deleting one makes room again.
        await server.http.delete(f"/auth/passkeys/{(await server.passkeys(headers))[0]['id']}", headers=headers)
        await server.register(headers, SoftAuthenticator())


async def _wait_for(sink: Sink, address: str, subject: str) -> EmailMessage:
    for _ in range(1000):
        found = [m for m in sink.to(address) if m["Subject"] == subject]
        if found:
            return found[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no email {subject!r} to {address} reached the SMTP server")


async def test_the_owner_is_emailed_about_every_passkey_added(make_config: MakeConfig) -> None:
    sink = Sink()
    controller = start_sink(sink)
    smtp = (
        '[email]\ntransport = "smtp"\nfrom = "passwordless <auth@mail.example.test>"\n'
        f'[email.smtp]\nhost = "127.0.0.1"\nport = {controller.port}\nsecurity = "none"\ntimeout = "3s"\n'
    )
    try:
        async with Server.serving(make_config(smtp + NO_RATE_LIMITS), FakeClock()) as server:
            await server.http.post("/auth/magic-link", json={"email": "ada@example.com"})
            link = text_of(await _wait_for(sink, "ada@example.com", "Sign in to passwordless"))
            token = link.split("token=", 1)[1].split()[0]
            r = await server.http.post("/auth/magic-link/verify", json={"token": token})
            assert r.status_code == 200, r.text
            headers = bearer(r.json()["access_token"])

            passkey = await server.register(headers, SoftAuthenticator(), name="Work laptop")

            message = await _wait_for(sink, "ada@example.com", ADDED)
            text = text_of(message)
            assert "Work laptop" in text and f"{PUBLIC}/account" in text
            html = message.get_body(preferencelist=("html",))
            assert html is not None and "Work laptop" in str(html.get_content())
            queued = [e for e in emails_to(server.config, "ada@example.com") if e["subject"] == ADDED]
            assert len(queued) == 1 and queued[0]["created_at"] == passkey["created_at"]
    finally:
        controller.stop()
