"""Sign-in tickets and sessions for bench/run.py, written straight into the server's database
(its SQLite file, or its PostgreSQL database: bench/engines.py) with the project's own store
functions (and hashed the way the server hashes them), so the timed runs spend the server's time
on verifying, not on minting what they verify. Every batch is one short write transaction.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from engines import Db

from passwordless.magic_link import store as tickets
from passwordless.platform.crypto import code_hash, new_code, new_id, new_token, token_hash
from passwordless.sessions import store as sessions
from passwordless.users import store as users

SESSIONS_PER_USER = 50  # refresh tokens belong to a pool of users, as sessions do


@dataclass(frozen=True)
class Ticket:
    email: str
    token: str  # the link's token (POST /auth/magic-link/verify)
    code: str  # the emailed code (POST /auth/code/verify with the email)


class _TicketWriter:
    def __init__(self, secret: str, ttl: float, tag: str, new_users: bool) -> None:
        self.secret, self.ttl, self.tag, self.new_users = secret, ttl, tag, new_users
        self.made: list[Ticket] = []

    def __call__(self, conn: Any, i: int) -> None:
        now = time.time()
        email = f"{self.tag}-{i}@bench.test"
        if not self.new_users:
            users.create_unless_exists(conn, email, now)  # a returning user: the common sign-in
        token, code, ticket_id = new_token(), new_code(), new_id()
        tickets.insert(
            conn,
            tickets.NewTicket(
                ticket_id, email, token_hash(token), code_hash(self.secret, ticket_id, code), None,
                "127.0.0.1", "bench/prepare", int(now), int(now + self.ttl),
            ),
        )
        self.made.append(Ticket(email, token, code))


def make_tickets(db: Db, secret: str, ttl: float, count: int, tag: str, new_users: bool = False) -> list[Ticket]:
    """`count` live sign-in tickets, one per distinct address (`tag` keeps addresses unique
    across calls). With new_users=False each address already has a user."""
    writer = _TicketWriter(secret, ttl, tag, new_users)
    db.batches(count, writer)
    return writer.made


class _SessionWriter:
    def __init__(self, ttl: float, tag: str) -> None:
        self.ttl, self.tag = ttl, tag
        self.user_id = ""
        self.made: list[str] = []

    def __call__(self, conn: Any, i: int) -> None:
        now = time.time()
        if i % SESSIONS_PER_USER == 0:
            email = f"{self.tag}-{i // SESSIONS_PER_USER}@bench.test"
            self.user_id = users.create_unless_exists(conn, email, now)[0].id
        refresh_token = new_token()
        session = sessions.Session(
            new_id(), self.user_id, ("email",), "127.0.0.1", "bench/prepare", int(now), int(now), int(now + self.ttl),
            int(now),
        )
        sessions.insert(conn, session, token_hash(refresh_token))
        self.made.append(refresh_token)


def make_refresh_tokens(db: Db, ttl: float, count: int, tag: str) -> list[str]:
    """`count` refresh tokens, each the current token of its own live session."""
    writer = _SessionWriter(ttl, tag)
    db.batches(count, writer)
    return writer.made


def unique_tag(prefix: str) -> str:
    """A prefix for addresses that no earlier call used (runs may share one database)."""
    return f"{prefix}-{secrets.token_hex(4)}"
