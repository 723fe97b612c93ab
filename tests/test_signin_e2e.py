"""End to end: sign in by email against the real `passwordless serve` process over HTTP, reading
the email the console transport prints (API.md "Sign in by email", "Tokens and sessions",
"Email queue"; CONFIG.md server.public_url, server.drain_delay)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.engine import query
from tests.support.live import LiveServer, serving

DRAIN_DELAY = 0.2  # the drain delay `serving` configures


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    # public_url on 127.0.0.1 while requests claim another Host: links must follow the config
    with serving(tmp_path, host="127.0.0.1") as running:
        yield running


def test_sign_in_by_link_then_by_code_against_the_real_server(server: LiveServer) -> None:
    public_url = server.public_url
    with httpx.Client(base_url=server.public_url, trust_env=False, timeout=10) as http:
        # --- ask for a link; the email's link comes from configuration, not from the request
        asked = http.post(
            "/auth/magic-link",
            json={"email": " E2E.User@Example.com "},
            headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
        )
        assert (asked.status_code, asked.json()) == (202, {"status": "sent"})
        first = server.next_email()
        assert first.to == "e2e.user@example.com"
        assert first.subject
        assert first.link.startswith(f"{public_url}/auth/magic-link/verify?token=")
        assert "evil.example" not in first.text

        # --- opening the link shows a confirmation page and spends nothing
        for _ in range(2):
            page = http.get(first.link.removeprefix(public_url))
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert f'value="{first.token}"' in page.text
            assert 'action="/auth/magic-link/verify"' in page.text

        # --- the token signs in, once
        signed_in = http.post("/auth/magic-link/verify", json={"token": first.token})
        assert signed_in.status_code == 200, signed_in.text
        tokens = signed_in.json()
        assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
        assert tokens["user"]["email"] == "e2e.user@example.com"
        assert signed_in.headers["cache-control"] == "no-store"
        again = http.post("/auth/magic-link/verify", json={"token": first.token})
        assert (again.status_code, again.json()["error"]["code"]) == (401, "invalid_token")
        user_id = tokens["user"]["id"]

        me = http.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200, me.text
        assert (me.json()["id"], me.json()["email"]) == (user_id, "e2e.user@example.com")

        # --- refresh gives new tokens that work
        refreshed = http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        renewed = refreshed.json()
        assert renewed["refresh_token"] != tokens["refresh_token"]
        assert renewed["access_token"] != tokens["access_token"]
        assert renewed["user"] == tokens["user"]
        bearer = {"Authorization": f"Bearer {renewed['access_token']}"}
        assert http.get("/auth/me", headers=bearer).json()["email"] == "e2e.user@example.com"

        # --- logout ends the session: the still-unexpired access token no longer works
        logout = http.post("/auth/logout", headers=bearer)
        assert logout.status_code == 204
        after = http.get("/auth/me", headers=bearer)
        assert after.status_code == 401
        assert after.json()["error"]["code"] in ("unauthorized", "invalid_token")
        assert http.post("/auth/refresh", json={"refresh_token": renewed["refresh_token"]}).status_code == 401

        # --- a second sign-in, with the code from a new email
        assert http.post("/auth/magic-link", json={"email": "e2e.user@example.com"}).status_code == 202
        second = server.next_email()
        assert second.to == "e2e.user@example.com"
        assert second.token != first.token
        assert second.link.startswith(f"{public_url}/auth/magic-link/verify?token=")
        by_code = http.post("/auth/code/verify", json={"email": "E2E.User@example.com", "code": second.code})
        assert by_code.status_code == 200, by_code.text
        assert by_code.json()["user"] == {"id": user_id, "email": "e2e.user@example.com"}
        bearer = {"Authorization": f"Bearer {by_code.json()['access_token']}"}
        assert http.get("/auth/me", headers=bearer).json()["id"] == user_id
        # the code spent the ticket: its link no longer works
        spent = http.post("/auth/magic-link/verify", json={"token": second.token})
        assert spent.status_code == 401

    # --- SIGTERM: a clean exit
    server.terminate()
    logs = server.logs()
    assert server.process.returncode == 0, logs

    # --- nothing secret was logged
    for secret in (first.token, first.code, second.token, second.code):
        assert secret not in logs

    # --- both emails are recorded as sent, their bodies (link and code) erased
    rows = query(
        server,
        "SELECT to_address, status, body_text, body_html, sent_at FROM email_queue ORDER BY created_at, id",
    )
    assert [(to, status, text, html) for to, status, text, html, _ in rows] == [
        ("e2e.user@example.com", "sent", None, None),
        ("e2e.user@example.com", "sent", None, None),
    ]
    assert all(sent_at is not None for *_, sent_at in rows)
    assert query(server, "SELECT count(*) FROM audit_logs WHERE event_type = 'email_sent'") == [(2,)]
