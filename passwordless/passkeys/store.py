"""Passkeys (table passkeys)."""

from __future__ import annotations

import sqlite3


def count_for_user(conn: sqlite3.Connection, user_id: str) -> int:
    return int(conn.execute("SELECT count(*) FROM passkeys WHERE user_id = ?", (user_id,)).fetchone()[0])
