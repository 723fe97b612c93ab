"""Housekeeping (CONFIG.md email.keep_sent, retention.audit_log; `passwordless prune [--dry-run]`):
what is past its time goes — tickets expired (used or not) more than a day ago, expired challenges,
sessions expired or revoked more than a day ago (with their rotated refresh tokens), sent and dead
emails and webhook deliveries older than email.keep_sent, audit rows older than
retention.audit_log — and nothing else; --dry-run reports the same counts and deletes nothing;
work goes in batches, and every batch is done.

Rows are made by the real app running on a FakeClock set in the past (the CLI prunes with the real
time, so every moment here is relative to time.time()), plus a few written straight into the database that the
app only makes slowly (dead emails and deliveries, a session left to expire)."""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from passwordless.config.settings import Config
from passwordless.housekeeping import service as housekeeping
from passwordless.platform import storage
from passwordless.platform.crypto import new_id
from tests.conftest import MakeConfig
from tests.support.app import FakeClock, running
from tests.support.authenticator import SoftAuthenticator
from tests.support.engine import connection
from tests.support.processes import clean_env, cli
from tests.support.signin import NO_RATE_LIMITS, all_mail_sent, count, request_sign_in, rows, verify_link

DAY = 86400
TABLES = (
    "sign_in_tickets", "webauthn_challenges", "sessions", "rotated_refresh_tokens", "email_queue", "webhook_queue",
    "audit_logs",
)
REPORTED = ("sign_in_tickets", "webauthn_challenges", "sessions", "email_queue", "webhook_queue", "audit_logs")
# The OIDC provider's tables are pruned and reported too (none here: tests/test_oidc.py fills them).
NO_OIDC_ROWS = {t: 0 for t in ("oidc_codes", "oidc_access_tokens", "oidc_refresh_tokens", "oidc_grants", "oidc_backchannel_queue")}
SETTINGS = '[auth]\nreauth_window = "400d"\n[email]\ntransport = "file"\nkeep_sent = "7d"\n[retention]\naudit_log = "30d"\n' + NO_RATE_LIMITS
LINE = re.compile(r"^(would delete|deleted)\s+(\d+)\s+(\w+)$")


def snapshot(config: Config) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """Every row of every pruned table, by primary key (each table's first column)."""
    with connection(config) as conn:
        return {t: {r[0]: tuple(r) for r in conn.execute(f"SELECT * FROM {t}")} for t in TABLES}


def execute(config: Config, statement: str, *params: object) -> None:
    with connection(config) as conn:
        conn.execute(statement, params)


def report(output: str, verb: str) -> dict[str, int]:
    found = {}
    for line in output.strip().splitlines():
        match = LINE.match(line.strip())
        assert match, f"unexpected output line: {line!r}"
        assert match[1] == verb, line
        found[match[3]] = int(match[2])
    return found


class Ledger:
    """Which rows a prune must take, phase by phase: rows new since the last look are labelled."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.known = {t: set(rows) for t, rows in snapshot(config).items()}
        self.go: dict[str, set[int]] = {t: set() for t in TABLES}

    def label(self, **go: bool) -> dict[str, set[int]]:
        """Label what is new; every table with new rows must be named (go=True or False)."""
        now = snapshot(self.config)
        new = {t: set(now[t]) - self.known[t] for t in TABLES}
        for table, ids in new.items():
            if ids:
                assert table in go, f"new rows in {table} were not labelled"
                if go[table]:
                    self.go[table] |= ids
            self.known[table] |= ids
        return new


async def sign_in(http: httpx.AsyncClient, config: Config, email: str) -> dict[str, Any]:
    token, _ = await request_sign_in(http, config, email)
    response = await verify_link(http, token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(body: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {body['access_token']}"}


async def build(config: Config) -> Ledger:
    """Rows of every kind, old and new, each labelled: goes or stays."""
    now = time.time()
    clock = FakeClock(now - 40 * DAY)
    async with running(config, clock=clock) as (_, http):
        ledger = Ledger(config)

        # 40 days ago: everything made then is past every limit.
        old = await sign_in(http, config, "old@example.com")
        refreshed = await http.post("/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert refreshed.status_code == 200
        await request_sign_in(http, config, "old@example.com")  # never used: expired long ago
        challenge = await http.post("/auth/passkeys/register/options", json={}, headers=bearer(refreshed.json()))
        assert challenge.status_code == 200
        await all_mail_sent(config)
        old_phase = ledger.label(
            sign_in_tickets=True, webauthn_challenges=True, sessions=True, rotated_refresh_tokens=True,
            email_queue=True, audit_logs=True,
        )
        assert len(old_phase["rotated_refresh_tokens"]) == 1

        # 3 days ago: a spent ticket and a session revoked then go; the email and audit rows stay.
        clock.now = now - 3 * DAY
        mid = await sign_in(http, config, "mid@example.com")
        assert (await http.post("/auth/logout", headers=bearer(mid))).status_code == 204
        await all_mail_sent(config)
        ledger.label(sign_in_tickets=True, sessions=True, email_queue=False, audit_logs=False)

        # 2 hours ago: a session revoked 2 hours ago and tickets spent then stay (less than a day);
        # a challenge that expired 1 h 55 min ago goes.
        clock.now = now - 2 * 3600
        ended = await sign_in(http, config, "new@example.com")
        assert (await http.post("/auth/logout", headers=bearer(ended))).status_code == 204
        active = await sign_in(http, config, "new@example.com")
        await all_mail_sent(config)
        ledger.label(sign_in_tickets=False, sessions=False, email_queue=False, audit_logs=False)
        expired = await http.post("/auth/passkeys/register/options", json={}, headers=bearer(active))
        assert expired.status_code == 200
        ledger.label(webauthn_challenges=True, audit_logs=False)
        rotated = await http.post("/auth/refresh", json={"refresh_token": active["refresh_token"]})
        assert rotated.status_code == 200
        ledger.label(rotated_refresh_tokens=False, audit_logs=False)

        # A minute ago: a live ticket and a live challenge; a passkey (not pruned, ever).
        clock.now = now - 60
        await request_sign_in(http, config, "new@example.com")
        rotated = await http.post("/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]})
        assert rotated.status_code == 200
        live = await http.post("/auth/passkeys/register/options", json={}, headers=bearer(rotated.json()))
        assert live.status_code == 200
        credential = SoftAuthenticator().make_credential(live.json()["options"], config.server.public_url)
        made = await http.post(
            "/auth/passkeys/register/verify", json={"credential": credential}, headers=bearer(rotated.json())
        )
        assert made.status_code == 201
        fresh = await http.post("/auth/passkeys/register/options", json={}, headers=bearer(rotated.json()))
        assert fresh.status_code == 200
        await all_mail_sent(config)
        ledger.label(
            sign_in_tickets=False, webauthn_challenges=False, rotated_refresh_tokens=False, email_queue=False,
            audit_logs=False,
        )
        user_id = rotated.json()["user"]["id"]

    # What the app makes only slowly, written directly.
    n = int(now)
    for status, at, goes in (
        ("dead", n - 8 * DAY, True), ("sent", n - 8 * DAY, True), ("dead", n - DAY, False),
        ("sent", n - 6 * DAY, False), ("pending", n - 30 * DAY, False), ("sending", n - 30 * DAY, False),
    ):
        sent_at = at if status == "sent" else None
        execute(
            config,
            "INSERT INTO email_queue (id, to_address, subject, body_text, body_html, status, attempts, last_error,"
            " last_attempt_at, next_attempt_at, lease_expires_at, created_at, sent_at)"
            " VALUES (?, 'x@example.com', 's', 't', 'h', ?, 1, NULL, ?, ?, ?, ?, ?)",
            new_id(), status, at, at + 60, at + 120 if status == "sending" else None, at - 60, sent_at,
        )
        ledger.label(email_queue=goes)
    for status, at, goes in (
        ("sent", n - 8 * DAY, True), ("dead", n - 10 * DAY, True), ("sent", n - DAY, False),
        ("dead", n - 2 * DAY, False), ("pending", n - 30 * DAY, False),
    ):
        execute(
            config,
            "INSERT INTO webhook_queue (id, url, event_type, payload, status, attempts, last_attempt_at,"
            " next_attempt_at, created_at, delivered_at) VALUES (?, 'https://hooks.example.com/in', 'user.created',"
            " '{}', ?, 1, ?, ?, ?, ?)",
            f"msg_{new_id()}", status, at, at + 60, at - 60, at if status == "sent" else None,
        )
        ledger.label(webhook_queue=goes)
    for at, goes in ((n - 31 * DAY, True), (n - 29 * DAY, False)):
        execute(
            config,
            "INSERT INTO audit_logs (id, created_at, event_type, success, details) VALUES (?, ?, 'logout', 1, '{}')",
            new_id(), at,
        )
        ledger.label(audit_logs=goes)
    for expires_at, goes in ((n - 2 * DAY, True), (n - 3600, False), (n + DAY, False)):
        execute(
            config,
            "INSERT INTO sessions (id, user_id, refresh_token_hash, amr, created_at, last_used_at, expires_at)"
            " VALUES (?, ?, ?, '[\"email\"]', ?, ?, ?)",
            new_id(), user_id, os.urandom(32), expires_at - 30 * DAY, expires_at - 30 * DAY, expires_at,
        )
        ledger.label(sessions=goes)
    return ledger


def test_prune_dry_run_reports_and_prune_deletes_exactly_what_is_past_its_time(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = make_config(SETTINGS)
    config_path = tmp_path / "config.toml"
    ledger = asyncio.run(build(config))
    expected = {t: len(ledger.go[t]) for t in REPORTED}
    assert all(expected.values()), expected  # every kind has something to go…
    before = snapshot(config)
    assert all(len(before[t]) > len(ledger.go[t]) for t in TABLES)  # …and something to stay

    dry = cli("prune", "--dry-run", "--config", str(config_path), cwd=tmp_path, env=clean_env())
    assert dry.returncode == 0, dry.stderr
    assert report(dry.stdout, "would delete") == expected | NO_OIDC_ROWS
    assert snapshot(config) == before, "--dry-run deleted something"

    done = cli("prune", "--config", str(config_path), cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert report(done.stdout, "deleted") == expected | NO_OIDC_ROWS
    after = snapshot(config)
    for table in TABLES:
        assert set(after[table]) == set(before[table]) - ledger.go[table], table
        for rowid, row in after[table].items():
            assert row == before[table][rowid]
    # The rotated refresh token of a pruned session went with it; the live session's stayed.
    assert len(after["rotated_refresh_tokens"]) == 2
    assert count(config, "passkeys") == 1 and count(config, "users") == 3

    again = cli("prune", "--config", str(config_path), cwd=tmp_path, env=clean_env())
    assert again.returncode == 0, again.stderr
    assert report(again.stdout, "deleted") == {t: 0 for t in REPORTED} | NO_OIDC_ROWS


def test_prune_works_in_batches_until_all_is_gone(make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(SETTINGS)
    storage.bring_up_to_date(config.database)
    now = int(time.time())
    old, recent = now - 40 * DAY, now - 60
    many, few = 23, 2
    with connection(config) as conn:
        conn.execute(
            "INSERT INTO users (id, email, webauthn_handle, created_at) VALUES ('u1', 'u@example.com', ?, ?)",
            (b"\x01", old),
        )
        for i in range(many + few):
            at = old if i < many else recent
            conn.execute(
                "INSERT INTO sign_in_tickets (id, email, token_hash, code_hash, created_at, expires_at)"
                " VALUES (?, 'u@example.com', ?, ?, ?, ?)",
                (new_id(), os.urandom(32), os.urandom(32), at, at + 900),
            )
            conn.execute(
                "INSERT INTO webauthn_challenges (challenge_hash, purpose, user_id, created_at, expires_at)"
                " VALUES (?, 'registration', 'u1', ?, ?)",
                (os.urandom(32), at, at + 300 if i < many else now + 300),
            )
            session_id = new_id()
            conn.execute(
                "INSERT INTO sessions (id, user_id, refresh_token_hash, amr, created_at, last_used_at, expires_at)"
                " VALUES (?, 'u1', ?, '[\"email\"]', ?, ?, ?)",
                (session_id, os.urandom(32), at, at, at + 30 * DAY),
            )
            for _ in range(2):
                conn.execute(
                    "INSERT INTO rotated_refresh_tokens (token_hash, session_id, rotated_at) VALUES (?, ?, ?)",
                    (os.urandom(32), session_id, at),
                )
            conn.execute(
                "INSERT INTO email_queue (id, to_address, subject, status, attempts, next_attempt_at, created_at,"
                " sent_at) VALUES (?, 'u@example.com', 's', 'sent', 1, ?, ?, ?)",
                (new_id(), at, at, at),
            )
            conn.execute(
                "INSERT INTO webhook_queue (id, url, event_type, payload, status, attempts, next_attempt_at,"
                " created_at, delivered_at) VALUES (?, 'https://h.example.com/', 'user.created', '{}', 'sent', 1,"
                " ?, ?, ?)",
                (f"msg_{new_id()}", at, at, at),
            )
            conn.execute(
                "INSERT INTO audit_logs (id, created_at, event_type, success) VALUES (?, ?, 'logout', 1)",
                (new_id(), at),
            )
    before = snapshot(config)
    monkeypatch.setattr(housekeeping, "BATCH", 5)

    async def run() -> tuple[dict[str, int], dict[str, int], list[Any]]:
        db = await storage.open_database(config.database)
        results: list[Any] = []
        real_write = db.write

        async def write(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            result = await real_write(fn, *args, **kwargs)
            results.append((fn, args, result))
            return result

        db.write = write  # type: ignore[method-assign]
        try:
            dry = (await housekeeping.prune(db, config, time.time(), dry_run=True)).gone
            assert results == [], "a dry run wrote"
            done = (await housekeeping.prune(db, config, time.time())).gone
            return dry, done, results
        finally:
            await db.close()

    dry, done, results = asyncio.run(run())
    assert dry == {t: many for t in REPORTED}
    assert done == {t: many for t in REPORTED}
    for _, args, result in results:
        assert result <= 5, "a batch bigger than BATCH"
        assert args[2] == 5
    full_batches = [r for _, _, r in results if r == 5]
    assert len(full_batches) == len(REPORTED) * (many // 5)
    assert len([r for _, _, r in results if r > 0]) == len(REPORTED) * math.ceil(many / 5)
    after = snapshot(config)
    for table in TABLES:
        kept = 2 * few if table == "rotated_refresh_tokens" else few
        assert len(after[table]) == kept, table
        assert set(after[table]) <= set(before[table])
    assert not rows(config, "SELECT * FROM rotated_refresh_tokens WHERE session_id NOT IN (SELECT id FROM sessions)")
