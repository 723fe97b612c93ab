"""The OIDC provider's tables (migration 0006): authorization codes, grants with their refresh
and access tokens, consents and user groups. Codes and tokens are kept only as hashes."""

from __future__ import annotations

import json
from dataclasses import dataclass

from passwordless.platform.db.types import Connection, Row
from passwordless.platform.sql import delete_where
from passwordless.users import store as users


@dataclass(frozen=True)
class Code:
    client_id: str
    user_id: str
    session_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    amr: tuple[str, ...]
    auth_time: int
    expires_at: int


@dataclass(frozen=True)
class Grant:
    id: str
    client_id: str
    user_id: str
    session_id: str
    scope: str
    amr: tuple[str, ...]
    auth_time: int
    expires_at: int


_CODE = (
    "client_id, user_id, session_id, redirect_uri, scope, nonce, code_challenge, code_challenge_method, amr,"
    " auth_time, expires_at"
)
_GRANT = (
    "oidc_grants.id, oidc_grants.client_id, oidc_grants.user_id, oidc_grants.session_id, oidc_grants.scope,"
    " oidc_grants.amr, oidc_grants.auth_time, oidc_grants.expires_at"
)


def _code(r: Row) -> Code:
    return Code(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(json.loads(r[8])), r[9], r[10])


def _grant(r: Row | None) -> Grant | None:
    return Grant(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), r[6], r[7]) if r else None


def insert_code(conn: Connection, code_hash: bytes, code: Code, now: float) -> None:
    conn.execute(
        f"INSERT INTO oidc_codes (code_hash, {_CODE}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            code_hash, code.client_id, code.user_id, code.session_id, code.redirect_uri, code.scope, code.nonce,
            code.code_challenge, code.code_challenge_method, json.dumps(list(code.amr)), code.auth_time,
            code.expires_at, int(now),
        ),
    )


def live_code(conn: Connection, code_hash: bytes, now: float) -> Code | None:
    row = conn.execute(
        f"SELECT {_CODE} FROM oidc_codes WHERE code_hash = ? AND grant_id IS NULL AND expires_at > ?",
        (code_hash, int(now)),
    ).fetchone()
    return _code(row) if row else None


def spend_code(conn: Connection, code_hash: bytes, grant_id: str, now: float) -> bool:
    """Mark a live code redeemed by `grant_id`, in one statement; False if it was not live."""
    row = conn.execute(
        "UPDATE oidc_codes SET grant_id = ? WHERE code_hash = ? AND grant_id IS NULL AND expires_at > ?"
        " RETURNING code_hash",
        (grant_id, code_hash, int(now)),
    ).fetchone()
    return row is not None


def grant_of_spent_code(conn: Connection, code_hash: bytes) -> str | None:
    row = conn.execute("SELECT grant_id FROM oidc_codes WHERE code_hash = ?", (code_hash,)).fetchone()
    return row[0] if row else None


def insert_grant(conn: Connection, grant: Grant, now: float) -> None:
    conn.execute(
        "INSERT INTO oidc_grants (id, client_id, user_id, session_id, scope, amr, auth_time, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            grant.id, grant.client_id, grant.user_id, grant.session_id, grant.scope, json.dumps(list(grant.amr)),
            grant.auth_time, int(now), grant.expires_at,
        ),
    )


def revoke_grant(conn: Connection, grant_id: str, now: float, reason: str) -> bool:
    cursor = conn.execute(
        "UPDATE oidc_grants SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
        (int(now), reason, grant_id),
    )
    return cursor.rowcount > 0


def session_of_grant(conn: Connection, grant_id: str) -> str | None:
    row = conn.execute("SELECT session_id FROM oidc_grants WHERE id = ?", (grant_id,)).fetchone()
    return row[0] if row else None


def _live_grant_sql(where: str) -> str:
    """A grant is live while neither it nor the browser session it rides on has ended."""
    return (
        f"SELECT {_GRANT} FROM oidc_grants JOIN sessions ON sessions.id = oidc_grants.session_id"
        f" WHERE {where} AND oidc_grants.revoked_at IS NULL AND oidc_grants.expires_at > ?"
        " AND sessions.revoked_at IS NULL AND sessions.expires_at > ?"
    )


def live_grant(conn: Connection, grant_id: str, now: float) -> Grant | None:
    return _grant(conn.execute(_live_grant_sql("oidc_grants.id = ?"), (grant_id, int(now), int(now))).fetchone())


def insert_refresh(conn: Connection, token_hash: bytes, grant_id: str, now: float, expires_at: int) -> None:
    conn.execute(
        "INSERT INTO oidc_refresh_tokens (token_hash, grant_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (token_hash, grant_id, int(now), expires_at),
    )


def rotate_refresh(conn: Connection, token_hash: bytes, now: float) -> str | None:
    """Spend a live refresh token in one statement: its grant's id, or None."""
    row = conn.execute(
        "UPDATE oidc_refresh_tokens SET rotated_at = ? WHERE token_hash = ? AND rotated_at IS NULL AND expires_at > ?"
        " RETURNING grant_id",
        (int(now), token_hash, int(now)),
    ).fetchone()
    return row[0] if row else None


def refresh_grant(conn: Connection, token_hash: bytes) -> tuple[str, bool] | None:
    """The grant of a refresh token and whether it was already rotated (None: unknown)."""
    row = conn.execute(
        "SELECT grant_id, rotated_at FROM oidc_refresh_tokens WHERE token_hash = ?", (token_hash,)
    ).fetchone()
    return (row[0], row[1] is not None) if row else None


def insert_access(conn: Connection, jti: str, grant_id: str, expires_at: int) -> None:
    conn.execute(
        "INSERT INTO oidc_access_tokens (jti, grant_id, expires_at) VALUES (?, ?, ?)", (jti, grant_id, expires_at)
    )


def live_access(conn: Connection, jti: str, now: float) -> Grant | None:
    """The live grant of an unrevoked, unexpired access token."""
    return _grant(
        conn.execute(
            _live_grant_sql(
                "oidc_grants.id = (SELECT grant_id FROM oidc_access_tokens WHERE jti = ? AND revoked_at IS NULL"
                " AND expires_at > ?)"
            ),
            (jti, int(now), int(now), int(now)),
        ).fetchone()
    )


def revoke_access(conn: Connection, jti: str, now: float) -> bool:
    cursor = conn.execute(
        "UPDATE oidc_access_tokens SET revoked_at = ? WHERE jti = ? AND revoked_at IS NULL", (int(now), jti)
    )
    return cursor.rowcount > 0


def consented_scope(conn: Connection, user_id: str, client_id: str) -> frozenset[str]:
    row = conn.execute(
        "SELECT scope FROM oidc_consents WHERE user_id = ? AND client_id = ?", (user_id, client_id)
    ).fetchone()
    return frozenset(row[0].split()) if row else frozenset()


def save_consent(conn: Connection, user_id: str, client_id: str, scope: frozenset[str], now: float) -> None:
    conn.execute(
        "INSERT INTO oidc_consents (user_id, client_id, scope, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, created_at = excluded.created_at",
        (user_id, client_id, " ".join(sorted(scope)), int(now)),
    )


def groups_of(conn: Connection, user_id: str) -> list[str]:
    return users.groups_of(conn, user_id)


def prune_codes(conn: Connection, before: float, limit: int, dry_run: bool) -> int:
    return delete_where(conn, "oidc_codes", "expires_at < ?", (int(before),), limit, dry_run)


def prune_access_tokens(conn: Connection, before: float, limit: int, dry_run: bool) -> int:
    return delete_where(conn, "oidc_access_tokens", "expires_at < ?", (int(before),), limit, dry_run)


def prune_refresh_tokens(conn: Connection, before: float, limit: int, dry_run: bool) -> int:
    return delete_where(conn, "oidc_refresh_tokens", "expires_at < ?", (int(before),), limit, dry_run)


def prune_grants(conn: Connection, before: float, limit: int, dry_run: bool) -> int:
    """Grants past their time (their tokens go with them: ON DELETE CASCADE)."""
    return delete_where(conn, "oidc_grants", "expires_at < ?", (int(before),), limit, dry_run)


# For housekeeping (app.py and `passwordless prune` hand them over): what is a day past its time goes.
PRUNERS = (
    ("oidc_codes", prune_codes), ("oidc_access_tokens", prune_access_tokens),
    ("oidc_refresh_tokens", prune_refresh_tokens), ("oidc_grants", prune_grants),
)


def prune_backchannel_queue(conn: Connection, before: float, limit: int, dry_run: bool) -> int:
    """Sent and dead back-channel logout deliveries (pruned after email.keep_sent, like webhooks)."""
    where = "status IN ('sent', 'dead') AND coalesce(delivered_at, last_attempt_at, created_at) < ?"
    return delete_where(conn, "oidc_backchannel_queue", where, (int(before),), limit, dry_run)


QUEUE_PRUNERS = (("oidc_backchannel_queue", prune_backchannel_queue),)
