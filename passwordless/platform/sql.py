"""SQL helpers that stores share."""

from __future__ import annotations

import sqlite3
from typing import Any


def delete_where(
    conn: sqlite3.Connection, table: str, where: str, params: tuple[Any, ...], limit: int, dry_run: bool
) -> int:
    """Delete up to `limit` rows matching `where` (or, with dry_run, count them all); how many.
    Batches keep each write transaction short, so sign-ins never wait long behind a prune."""
    if dry_run:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0])
    cursor = conn.execute(
        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} LIMIT ?)", (*params, limit)
    )
    return cursor.rowcount
