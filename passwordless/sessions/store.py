"""Sessions (table sessions) and the refresh tokens they have already exchanged
(table rotated_refresh_tokens). Refresh tokens are stored only as hashes."""

from __future__ import annotations

import json
from dataclasses import dataclass

from passwordless.platform.db.types import Connection, Row
from passwordless.platform.sql import delete_where
from passwordless.users.store import User

_COLUMNS = "id, user_id, amr, ip, user_agent, created_at, last_used_at, expires_at, auth_time"


@dataclass(frozen=True)
class Session:
    id: str
    user_id: str
    amr: tuple[str, ...]
    ip: str | None
    user_agent: str | None
    created_at: int
    last_used_at: int
    expires_at: int
    auth_time: int  # when the user signed in to start it; a refresh keeps it


def _session(row: Row | None) -> Session | None:
    if row is None:
        return None
    return Session(
        row["id"], row["user_id"], tuple(json.loads(row["amr"])), row["ip"], row["user_agent"],
        row["created_at"], row["last_used_at"], row["expires_at"], row["auth_time"],
    )


def insert(conn: Connection, session: Session, refresh_hash: bytes) -> None:
    conn.execute(
        f"INSERT INTO sessions ({_COLUMNS}, refresh_token_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            session.id, session.user_id, json.dumps(list(session.amr)), session.ip, session.user_agent,
            session.created_at, session.last_used_at, session.expires_at, session.auth_time, refresh_hash,
        ),
    )


def active_user(conn: Connection, session_id: str, now: float) -> User | None:
    """The user of a live session, in one statement (this runs for every authenticated request)."""
    row = conn.execute(
        "SELECT users.id, users.email, users.created_at FROM sessions JOIN users ON users.id = sessions.user_id"
        " WHERE sessions.id = ? AND sessions.revoked_at IS NULL AND sessions.expires_at > ?",
        (session_id, int(now)),
    ).fetchone()
    return User(row[0], row[1], row[2]) if row else None


def active(conn: Connection, session_id: str, now: float) -> Session | None:
    return _session(
        conn.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
            (session_id, int(now)),
        ).fetchone()
    )


def auth_time(conn: Connection, session_id: str) -> int | None:
    """When the user signed in to start a session (None for an unknown one)."""
    row = conn.execute("SELECT auth_time FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return int(row[0]) if row else None


def rotate(conn: Connection, old_hash: bytes, new_hash: bytes, now: float) -> Session | None:
    """Exchange a live refresh token for a new one, in one statement; None if it is not live."""
    row = conn.execute(
        f"UPDATE sessions SET refresh_token_hash = ?, last_used_at = ?"
        f" WHERE refresh_token_hash = ? AND revoked_at IS NULL AND expires_at > ? RETURNING {_COLUMNS}",
        (new_hash, int(now), old_hash, int(now)),
    ).fetchone()
    session = _session(row)
    if session:
        conn.execute(
            "INSERT INTO rotated_refresh_tokens (token_hash, session_id, rotated_at) VALUES (?, ?, ?)",
            (old_hash, session.id, int(now)),
        )
    return session


def by_refresh_hash(conn: Connection, token_hash: bytes) -> Session | None:
    return _session(
        conn.execute(f"SELECT {_COLUMNS} FROM sessions WHERE refresh_token_hash = ?", (token_hash,)).fetchone()
    )


def session_of_rotated(conn: Connection, token_hash: bytes) -> Session | None:
    """The session a refresh token belonged to, if that token was already exchanged."""
    return _session(
        conn.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE id ="
            " (SELECT session_id FROM rotated_refresh_tokens WHERE token_hash = ?)",
            (token_hash,),
        ).fetchone()
    )


def revoke(conn: Connection, session_id: str, now: float, reason: str) -> bool:
    cursor = conn.execute(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
        (int(now), reason, session_id),
    )
    return cursor.rowcount > 0


def list_active(conn: Connection, user_id: str, now: float) -> list[Session]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?"
        " ORDER BY created_at DESC, id DESC",
        (user_id, int(now)),
    ).fetchall()
    return [s for s in map(_session, rows) if s]


def count_active(conn: Connection, now: float) -> int:
    """Read from the partial index sessions_active alone: no table scan."""
    row = conn.execute(
        "SELECT count(*) FROM sessions INDEXED BY sessions_active WHERE revoked_at IS NULL AND expires_at > ?",
        (int(now),),
    ).fetchone()
    return int(row[0])


def prune(conn: Connection, before: float, limit: int, dry_run: bool = False) -> int:
    """Sessions that expired, or were revoked, before a moment (their rotated tokens go with them)."""
    where = "expires_at < ? OR revoked_at < ?"
    return delete_where(conn, "sessions", where, (int(before), int(before)), limit, dry_run)


def count_active_for_user(conn: Connection, user_id: str, now: float) -> int:
    row = conn.execute(
        "SELECT count(*) FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?",
        (user_id, int(now)),
    ).fetchone()
    return int(row[0])


def revoke_all_for_user(conn: Connection, user_id: str, now: float, reason: str) -> list[str]:
    """End every live session of a user; their ids."""
    rows = conn.execute(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL"
        " AND expires_at > ? RETURNING id",
        (int(now), reason, user_id, int(now)),
    ).fetchall()
    return [r[0] for r in rows]

