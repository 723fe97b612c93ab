"""Housekeeping: what is past its time goes, in small batches. Run hourly by the server and by
`passwordless prune` (with --dry-run, it only counts)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from passwordless.config.settings import Config
from passwordless.magic_link import store as tickets
from passwordless.mail import queue as emails
from passwordless.passkeys import store as passkeys
from passwordless.platform import audit
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.sessions import store as sessions
from passwordless.webhooks import store as webhooks

BATCH = 500
DAY = 86400.0
Pruner = Callable[[Connection, float, int, bool], int]


def rules(config: Config, now: float) -> list[tuple[str, Pruner, float]]:
    """(what, how, everything older than this moment goes)."""
    return [
        ("sign_in_tickets", tickets.prune, now - DAY),
        ("webauthn_challenges", passkeys.prune_challenges, now),
        ("sessions", sessions.prune, now - DAY),
        ("email_queue", emails.prune, now - config.email.keep_sent),
        ("webhook_queue", webhooks.prune, now - config.email.keep_sent),
        ("audit_logs", audit.prune, now - config.retention.audit_log),
    ]


async def prune(db: Database, config: Config, now: float, dry_run: bool = False) -> dict[str, int]:
    """How many rows of each kind went (or, with dry_run, would go)."""
    gone: dict[str, int] = {}
    for name, pruner, before in rules(config, now):
        if dry_run:
            gone[name] = await db.read(pruner, before, BATCH, True)
            continue
        gone[name] = 0
        while (batch := await db.write(pruner, before, BATCH, False)) > 0:
            gone[name] += batch
            await asyncio.sleep(0)  # let waiting sign-ins through between batches
    return gone
