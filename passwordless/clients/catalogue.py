"""Every OpenID Connect client, wherever it comes from: `[[oidc.clients]]` (kept in memory, as the
configuration is) and the admin API (read from the database at each use, so a client made,
changed or deleted on one server counts on every server sharing the database at once; a lookup
by primary key per request, no cache for another server's change to miss)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from passwordless.clients import store
from passwordless.config.settings import CLIENT_ID, OidcClientSettings
from passwordless.platform.db.types import Connection

Source = Literal["config", "api"]
_WELL_FORMED = re.compile(CLIENT_ID)


@dataclass(frozen=True)
class Entry:
    settings: OidcClientSettings
    source: Source
    created_at: int | None = None  # API clients only
    updated_at: int | None = None


def _api(stored: store.StoredClient) -> Entry:
    return Entry(stored.settings, "api", stored.created_at, stored.updated_at)


@dataclass(frozen=True)
class Catalogue:
    configured: Mapping[str, OidcClientSettings]

    @classmethod
    def of(cls, configured: Iterable[OidcClientSettings]) -> Catalogue:
        return cls({c.id: c for c in configured})

    def find(self, conn: Connection, client_id: str) -> Entry | None:
        if client_id in self.configured:
            return Entry(self.configured[client_id], "config")
        # Only a well-formed id reaches the database (a NUL or a lone surrogate would not even bind).
        stored = store.by_id(conn, client_id) if _WELL_FORMED.fullmatch(client_id) else None
        return _api(stored) if stored else None

    def entries(self, conn: Connection) -> list[Entry]:
        """The config file's clients in its order, then the API's by id."""
        return [*(Entry(c, "config") for c in self.configured.values()), *map(_api, store.listed(conn))]

    def provider_on(self, conn: Connection) -> bool:
        """OIDC.md: the provider is on when at least one client exists (config or admin API)."""
        return bool(self.configured) or store.any_client(conn)

    def redirect_uris(self, conn: Connection) -> tuple[str, ...]:
        return tuple(uri for e in self.entries(conn) for uri in e.settings.redirect_uris)
