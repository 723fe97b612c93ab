"""SQL helpers that stores share."""

from __future__ import annotations

from typing import Any

from passwordless.platform.db.types import Connection, dialect


def delete_where(
    conn: Connection, table: str, where: str, params: tuple[Any, ...], limit: int, dry_run: bool
) -> int:
    """Delete up to `limit` rows matching `where` (or, with dry_run, count them all); how many.
    Batches keep each write transaction short, so sign-ins never wait long behind a prune."""
    if dry_run:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0])
    row = "rowid" if dialect(conn) == "sqlite" else "ctid"  # where each engine keeps a row
    cursor = conn.execute(
        f"DELETE FROM {table} WHERE {row} IN (SELECT {row} FROM {table} WHERE {where} LIMIT ?)", (*params, limit)
    )
    return cursor.rowcount
