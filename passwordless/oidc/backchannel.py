"""Back-channel logout (OIDC Back-Channel Logout 1.0; OIDC.md, "Sessions and logout"): when
browser sessions end, their grants are revoked and every client with a backchannel_logout_uri that
received tokens in them gets a logout token, through the durable queue oidc_backchannel_queue,
queued in the transaction that ended the sessions (the worker is woken once it commits)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from passwordless.oidc.clients import Client
from passwordless.platform.crypto import new_id
from passwordless.platform.db.types import Connection, after_commit, notify
from passwordless.platform.queues import table as queue_table

TABLE = "oidc_backchannel_queue"
QUEUE_CHANNEL = f"passwordless_{TABLE}"  # what the worker listens on (QueueWorker: passwordless_<table>)
LOGOUT_TYPE = "logout+jwt"
EVENT = "http://schemas.openid.net/event/backchannel-logout"
ClientLookup = Callable[[Connection, str], Client | None]


@dataclass(frozen=True)
class Delivery:
    id: str  # the logout token's jti
    client_id: str
    url: str
    user_id: str
    session_id: str
    algorithm: str
    attempts: int  # including the one just claimed


def logout_claims(delivery: Delivery, issuer: str, now: float) -> dict[str, Any]:
    """The logout token's claims: no nonce, the event, the session and its user."""
    return {
        "iss": issuer, "aud": delivery.client_id, "iat": int(now), "exp": int(now) + 120, "jti": delivery.id,
        "sub": delivery.user_id, "sid": delivery.session_id, "events": {EVENT: {}},
    }


class Backchannel:
    """What ends sessions calls (sessions and admin get it from the composition root as their
    `sessions_ended` hook); the worker to wake is set once it runs."""

    def __init__(self, clients: ClientLookup) -> None:
        self.clients = clients
        self._wake: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake_with(self, wake: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
        self._wake, self._loop = wake, loop

    def sessions_ended(self, conn: Connection, session_ids: Sequence[str], now: float) -> int:
        """Inside the unit that ended the sessions: revoke their grants, queue the logout tokens.
        Returns how many were queued."""
        queued = 0
        for session_id in dict.fromkeys(session_ids):
            revoke_grants_of_session(conn, session_id, now)
            for client_id, user_id in clients_of_session(conn, session_id):
                client = self.clients(conn, client_id)
                if client is None or not client.settings.backchannel_logout_uri:
                    continue
                enqueue(conn, client, user_id, session_id, now)
                queued += 1
        if queued:
            notify(conn, QUEUE_CHANNEL)
            after_commit(conn, self._wake_worker)
        return queued

    def _wake_worker(self) -> None:
        if self._wake is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)


def revoke_grants_of_session(conn: Connection, session_id: str, now: float) -> int:
    cursor = conn.execute(
        "UPDATE oidc_grants SET revoked_at = ?, revoked_reason = 'session_ended'"
        " WHERE session_id = ? AND revoked_at IS NULL",
        (int(now), session_id),
    )
    return cursor.rowcount


def clients_of_session(conn: Connection, session_id: str) -> list[tuple[str, str]]:
    """(client id, user id) of every client that received tokens in the session."""
    rows = conn.execute(
        "SELECT DISTINCT client_id, user_id FROM oidc_grants WHERE session_id = ? ORDER BY client_id", (session_id,)
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def enqueue(conn: Connection, client: Client, user_id: str, session_id: str, now: float) -> None:
    conn.execute(
        f"INSERT INTO {TABLE} (id, client_id, url, user_id, session_id, algorithm, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (new_id(), client.id, client.settings.backchannel_logout_uri, user_id, session_id,
         client.id_token_signed_response_alg, now, int(now)),
    )


def claim(conn: Connection, now: float, lease: float, limit: int) -> list[Delivery]:
    columns = "id, client_id, url, user_id, session_id, algorithm, attempts"
    rows = queue_table.lease(conn, TABLE, columns, now, lease, limit)
    return [Delivery(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def mark_sent(conn: Connection, delivery_id: str, now: float) -> None:
    conn.execute(
        f"UPDATE {TABLE} SET status = 'sent', delivered_at = ?, lease_expires_at = NULL, last_error = NULL WHERE id = ?",
        (int(now), delivery_id),
    )

