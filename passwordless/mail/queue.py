"""The durable email queue (table email_queue)."""

from __future__ import annotations

import sqlite3


def count_unsent(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM email_queue WHERE status IN ('pending', 'sending')").fetchone()
    return int(row[0])
