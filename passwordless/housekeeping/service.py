"""Housekeeping: what is past its time goes, in small batches. Run hourly by the server and by
`passwordless prune` (with --dry-run, it only counts)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from passwordless.config.settings import Config
from passwordless.magic_link import store as tickets
from passwordless.mail import queue as emails
from passwordless.passkeys import store as passkeys
from passwordless.platform import audit
from passwordless.platform.db import Database, concurrent
from passwordless.platform.db.types import Connection, try_lock
from passwordless.sessions import store as sessions
from passwordless.webhooks import store as webhooks

BATCH = 500
HOUSEKEEPING_LOCK = 7_234_571_002
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


@dataclass
class Pruned:
    """How many rows of each kind went (or, with dry_run, would go), and whether this run left the
    rest to another server that was pruning at the same time (one prunes at a time: SCALE.md)."""

    gone: dict[str, int] = field(default_factory=dict)
    left_to_another: bool = False


async def prune(
    db: Database, config: Config, now: float, dry_run: bool = False, more: Sequence[tuple[str, Pruner]] = (),
    queues: Sequence[tuple[str, Pruner]] = (),
) -> Pruned:
    """`more`: the pruners of features above this one (the OIDC provider's), handed over by the
    entry points; what they prune goes a day after its time. `queues`: their delivery queues,
    whose sent and dead rows go after email.keep_sent, like webhook_queue's."""
    done = Pruned()
    kept = now - config.email.keep_sent
    for name, pruner, before in [
        *rules(config, now), *((n, p, now - DAY) for n, p in more), *((n, p, kept) for n, p in queues)
    ]:
        if dry_run:
            done.gone[name] = await db.read(pruner, before, BATCH, True)
            continue
        done.gone[name] = 0
        while batch := await db.write(_batch, pruner, before, BATCH):
            if batch == SOMEONE_ELSE:
                done.left_to_another = True
                return done
            done.gone[name] += batch
            await asyncio.sleep(0)  # let waiting sign-ins through between batches
    return done


SOMEONE_ELSE = -1  # another server holds the housekeeping lock


@concurrent  # deletes by key what it chose under the lock: no need for SERIALIZABLE's retries
def _batch(conn: Connection, pruner: Pruner, before: float, limit: int) -> int:
    """One batch, if no other server is pruning right now (a lock held only for this transaction,
    which works through PgBouncer in transaction mode too)."""
    if not try_lock(conn, HOUSEKEEPING_LOCK):
        return SOMEONE_ELSE
    return pruner(conn, before, limit, False)
