"""Sign-in tickets (table sign_in_tickets): one per emailed link + code, single use.
Only hashes of the link token and the code are stored."""

from __future__ import annotations

from dataclasses import dataclass

from passwordless.platform.db.types import Connection
from passwordless.platform.sql import delete_where


@dataclass(frozen=True)
class NewTicket:
    id: str
    email: str
    token_hash: bytes
    code_hash: bytes
    redirect_to: str | None
    ip: str | None
    user_agent: str | None
    created_at: int
    expires_at: int


@dataclass(frozen=True)
class SpentTicket:
    id: str
    email: str
    redirect_to: str | None


def insert(conn: Connection, t: NewTicket) -> None:
    conn.execute(
        "INSERT INTO sign_in_tickets (id, email, token_hash, code_hash, redirect_to, ip, user_agent,"
        " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (t.id, t.email, t.token_hash, t.code_hash, t.redirect_to, t.ip, t.user_agent, t.created_at, t.expires_at),
    )


def spend_by_token(conn: Connection, token_hash: bytes, now: float) -> SpentTicket | None:
    """Spend a live ticket in one statement: of two concurrent calls, exactly one gets it."""
    return _spend(conn, "token_hash", token_hash, now)


def spend_by_id(conn: Connection, ticket_id: str, now: float) -> SpentTicket | None:
    return _spend(conn, "id", ticket_id, now)


def _spend(conn: Connection, column: str, value: object, now: float) -> SpentTicket | None:
    row = conn.execute(
        f"UPDATE sign_in_tickets SET spent_at = ? WHERE {column} = ? AND spent_at IS NULL AND expires_at > ?"
        " RETURNING id, email, redirect_to",
        (int(now), value, now),
    ).fetchone()
    return SpentTicket(row["id"], row["email"], row["redirect_to"]) if row else None


def is_live(conn: Connection, token_hash: bytes, now: float) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sign_in_tickets WHERE token_hash = ? AND spent_at IS NULL AND expires_at > ?",
        (token_hash, now),
    ).fetchone()
    return row is not None


def live_codes(conn: Connection, email: str, now: float) -> list[tuple[str, bytes]]:
    """(ticket id, code hash) of every live ticket for an email."""
    rows = conn.execute(
        "SELECT id, code_hash FROM sign_in_tickets WHERE email = ? AND spent_at IS NULL AND expires_at > ?",
        (email, now),
    ).fetchall()
    return [(r["id"], r["code_hash"]) for r in rows]


def count_wrong_code(conn: Connection, ticket_ids: list[str], max_attempts: int, now: float) -> None:
    """One more wrong code against each ticket; a ticket that reaches the limit is burned."""
    conn.executemany(
        "UPDATE sign_in_tickets SET attempts = attempts + 1,"
        " spent_at = CASE WHEN attempts + 1 >= ? THEN ? ELSE spent_at END"
        " WHERE id = ? AND spent_at IS NULL",
        [(max_attempts, int(now), ticket_id) for ticket_id in ticket_ids],
    )


def requested_since(conn: Connection, email: str, since: float) -> list[int]:
    """When tickets were made for an email since a moment, oldest first (for the per-email limit)."""
    rows = conn.execute(
        "SELECT created_at FROM sign_in_tickets WHERE email = ? AND created_at > ? ORDER BY created_at",
        (email, since),
    ).fetchall()
    return [r[0] for r in rows]


def prune(conn: Connection, before: float, limit: int, dry_run: bool = False) -> int:
    """Tickets that expired before a moment (used or not)."""
    return delete_where(conn, "sign_in_tickets", "expires_at < ?", (int(before),), limit, dry_run)
