"""Users (table users)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from passwordless.crypto import new_id


@dataclass(frozen=True)
class User:
    id: str
    email: str
    created_at: int


def _user(row: sqlite3.Row | None) -> User | None:
    return User(row["id"], row["email"], row["created_at"]) if row else None


def by_email(conn: sqlite3.Connection, email: str) -> User | None:
    return _user(conn.execute("SELECT id, email, created_at FROM users WHERE email = ?", (email,)).fetchone())


def by_id(conn: sqlite3.Connection, user_id: str) -> User | None:
    return _user(conn.execute("SELECT id, email, created_at FROM users WHERE id = ?", (user_id,)).fetchone())


def create(conn: sqlite3.Connection, email: str, now: float) -> User:
    user = User(new_id(), email, int(now))
    conn.execute(
        "INSERT INTO users (id, email, webauthn_handle, created_at) VALUES (?, ?, ?, ?)",
        (user.id, user.email, os.urandom(32), user.created_at),
    )
    return user


def mark_signed_in(conn: sqlite3.Connection, user_id: str, now: float) -> None:
    conn.execute("UPDATE users SET last_sign_in_at = ? WHERE id = ?", (int(now), user_id))


def webauthn_handle(conn: sqlite3.Connection, user_id: str) -> bytes | None:
    row = conn.execute("SELECT webauthn_handle FROM users WHERE id = ?", (user_id,)).fetchone()
    return bytes(row[0]) if row else None
