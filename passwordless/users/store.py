"""Users (table users)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from passwordless.platform.crypto import new_id
from passwordless.platform.db.types import Connection, Row


@dataclass(frozen=True)
class User:
    id: str
    email: str
    created_at: int


def _user(row: Row | None) -> User | None:
    return User(row["id"], row["email"], row["created_at"]) if row else None


def by_email(conn: Connection, email: str) -> User | None:
    return _user(conn.execute("SELECT id, email, created_at FROM users WHERE email = ?", (email,)).fetchone())


def by_id(conn: Connection, user_id: str) -> User | None:
    return _user(conn.execute("SELECT id, email, created_at FROM users WHERE id = ?", (user_id,)).fetchone())


def create_unless_exists(conn: Connection, email: str, now: float) -> tuple[User, bool]:
    """The user of `email`, made now unless another sign-in made them first; whether made now.
    (Two first sign-ins for one address may run at once on two servers.)"""
    user = User(new_id(), email, int(now))
    made = conn.execute(
        "INSERT INTO users (id, email, webauthn_handle, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (email) DO NOTHING RETURNING id",
        (user.id, user.email, os.urandom(32), user.created_at),
    ).fetchone()
    if made:
        return user, True
    existing = by_email(conn, email)
    assert existing is not None  # the conflict was on this address, and users are never renamed
    return existing, False


def mark_signed_in(conn: Connection, user_id: str, now: float) -> None:
    conn.execute("UPDATE users SET last_sign_in_at = ? WHERE id = ?", (int(now), user_id))


def webauthn_handle(conn: Connection, user_id: str) -> bytes | None:
    row = conn.execute("SELECT webauthn_handle FROM users WHERE id = ?", (user_id,)).fetchone()
    return bytes(row[0]) if row else None


@dataclass(frozen=True)
class UserRow:
    id: str
    email: str
    created_at: int
    last_sign_in_at: int | None


def page(conn: Connection, email_prefix: str | None, after: str | None, limit: int) -> list[UserRow]:
    """Users in id order (ids grow with time, so new users never shift earlier pages)."""
    rows = conn.execute(
        "SELECT id, email, created_at, last_sign_in_at FROM users"
        # A parameter tested only for NULL is cast: PostgreSQL must know every parameter's type.
        " WHERE (CAST(? AS TEXT) IS NULL OR email LIKE ? ESCAPE '\\')"
        " AND (CAST(? AS TEXT) IS NULL OR id > ?) ORDER BY id LIMIT ?",
        (email_prefix, _like_prefix(email_prefix or ""), after, after, limit),
    ).fetchall()
    return [UserRow(r[0], r[1], r[2], r[3]) for r in rows]


def row_by_id(conn: Connection, user_id: str) -> UserRow | None:
    row = conn.execute(
        "SELECT id, email, created_at, last_sign_in_at FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    return UserRow(row[0], row[1], row[2], row[3]) if row else None


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def count(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])


def delete(conn: Connection, user_id: str) -> User | None:
    """Delete a user; sessions, passkeys and challenges go with it (foreign keys), sign-in
    tickets by email. Audit rows stay."""
    user = by_id(conn, user_id)
    if user is None:
        return None
    conn.execute("DELETE FROM sign_in_tickets WHERE email = ?", (user.email,))
    conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
    return user


def groups_of(conn: Connection, user_id: str) -> list[str]:
    """The user's groups (for the OIDC provider's allowed_groups and `groups` claim), sorted."""
    rows = conn.execute("SELECT group_name FROM user_groups WHERE user_id = ? ORDER BY group_name", (user_id,))
    return [r[0] for r in rows.fetchall()]


def set_groups(conn: Connection, user_id: str, groups: list[str]) -> None:
    conn.execute("DELETE FROM user_groups WHERE user_id = ?", (user_id,))
    conn.executemany(
        "INSERT INTO user_groups (user_id, group_name) VALUES (?, ?)", [(user_id, g) for g in sorted(set(groups))]
    )


@dataclass(frozen=True)
class Consent:
    """What the user allowed an OIDC client (the provider's remembered consent)."""

    client_id: str
    scope: str
    created_at: int


def consents_of(conn: Connection, user_id: str) -> list[Consent]:
    rows = conn.execute(
        "SELECT client_id, scope, created_at FROM oidc_consents WHERE user_id = ? ORDER BY client_id", (user_id,)
    ).fetchall()
    return [Consent(r[0], r[1], r[2]) for r in rows]


def forget_consent(conn: Connection, user_id: str, client_id: str, now: float) -> bool:
    """Forget a consent and end the client's grants for the user (their refresh and access
    tokens with them); False if there was no such consent."""
    row = conn.execute(
        "DELETE FROM oidc_consents WHERE user_id = ? AND client_id = ? RETURNING client_id", (user_id, client_id)
    ).fetchone()
    if row is None:
        return False
    conn.execute(
        "UPDATE oidc_grants SET revoked_at = ?, revoked_reason = 'consent_revoked'"
        " WHERE user_id = ? AND client_id = ? AND revoked_at IS NULL",
        (int(now), user_id, client_id),
    )
    return True
