"""What an operator does to a running `passwordless serve` (or, in CI, the single-file
executable): a passkey sign-in with real signatures, `backup` while it serves, `restore` refused
until it stops, then a clean stop and a restore."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx

from tests.support.authenticator import SoftAuthenticator
from tests.support.live import LiveServer, serving
from tests.support.mail import Sink, start_sink, text_of
from tests.support.processes import clean_env, cli
from tests.support.waiting import wait_until


def sign_in_by_email(http: httpx.Client, server: LiveServer, email: str) -> dict[str, object]:
    assert http.post("/auth/magic-link", json={"email": email}).status_code == 202
    token = server.next_email().token
    answer = http.post("/auth/magic-link/verify", json={"token": token})
    assert answer.status_code == 200, answer.text
    tokens: dict[str, object] = answer.json()
    return tokens


def users_in(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT email FROM users ORDER BY email")]


def test_passkey_sign_in_backup_and_restore_against_the_real_server(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    device = SoftAuthenticator()
    with serving(tmp_path) as server, httpx.Client(base_url=server.public_url, trust_env=False, timeout=10) as http:
        tokens = sign_in_by_email(http, server, "ada@example.com")
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}
        options = http.post("/auth/passkeys/register/options", json={}, headers=bearer).json()["options"]
        credential = device.make_credential(options, server.public_url)
        registered = http.post("/auth/passkeys/register/verify", json={"credential": credential}, headers=bearer)
        assert registered.status_code == 201, registered.text

        options = http.post("/auth/passkeys/login/options", json={}).json()["options"]
        assertion = device.get_assertion(options, server.public_url)
        signed_in = http.post("/auth/passkeys/login/verify", json={"credential": assertion})
        assert signed_in.status_code == 200, signed_in.text
        me = http.get("/auth/me", headers={"authorization": f"Bearer {signed_in.json()['access_token']}"})
        assert me.json()["email"] == "ada@example.com" and me.json()["passkeys"] == 1

        made = cli("backup", str(tmp_path / "copy.db"), "--config", str(config), cwd=tmp_path, env=clean_env())
        assert made.returncode == 0, made.stderr
        assert "integrity check ok" in made.stdout
        sign_in_by_email(http, server, "bob@example.com")  # after the backup: not in it

        refused = cli("restore", str(tmp_path / "copy.db"), "--config", str(config), cwd=tmp_path, env=clean_env())
        assert refused.returncode == 1
        assert "in use by a running server" in refused.stderr
        assert users_in(server.db) == ["ada@example.com", "bob@example.com"]

        server.terminate()
        assert server.process.returncode == 0, server.logs()

    restored = cli("restore", str(tmp_path / "copy.db"), "--config", str(config), cwd=tmp_path, env=clean_env())
    assert restored.returncode == 0, restored.stderr
    assert users_in(tmp_path / "auth.db") == ["ada@example.com"]
    assert list(tmp_path.glob("auth.db.before-restore-*"))


def test_magic_link_sign_in_through_a_real_smtp_server(tmp_path: Path) -> None:
    sink = Sink()
    controller = start_sink(sink)
    try:
        smtp = f'[email.smtp]\nhost = "127.0.0.1"\nport = {controller.port}\nsecurity = "none"\n'
        with serving(tmp_path, smtp, env={"EMAIL_TRANSPORT": "smtp"}) as server, httpx.Client(
            base_url=server.public_url, trust_env=False, timeout=10
        ) as http:
            assert http.post("/auth/magic-link", json={"email": "ada@example.com"}).status_code == 202
            [message] = wait_until(lambda: sink.to("ada@example.com"), "the email at the SMTP server")
            link = re.search(r"token=([A-Za-z0-9_-]+)", text_of(message))
            assert link, text_of(message)
            tokens = http.post("/auth/magic-link/verify", json={"token": link.group(1)}).json()
            me = http.get("/auth/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
            assert me.json()["email"] == "ada@example.com"
            server.terminate()
            assert server.process.returncode == 0
    finally:
        controller.stop()
