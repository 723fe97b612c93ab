"""An admin API client body (a `[[oidc.clients]]` table as JSON, without a secret) made into the
client's settings: each field read by the kind the configuration declares for it, then the
start-up rules of config/clients.py. Anything refused is a 400 `invalid_request` naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from passwordless.config.clients import client_problems
from passwordless.config.settings import OidcClientSettings, Setting
from passwordless.platform.errors import invalid_request
from passwordless.platform.text import printable, storable

MAX_TEXT = 2000  # characters in any one string (a URL, a name, a pattern)
MAX_ITEMS = 100  # entries in any one list
_GENERATED = ("secret", "secret_sha256")  # the API makes the secret; a body never sets it
_KINDS: dict[str, Setting] = {
    f.name: f.metadata["setting"] for f in fields(OidcClientSettings) if f.name not in _GENERATED
}
# Stands in for the secret the API will generate, so the rules see a confidential client with one.
_SOME_SECRET = "0" * 64


def new_client(data: Mapping[str, object]) -> OidcClientSettings:
    values = _read(data)
    if not values.get("id"):
        raise invalid_request("The field 'id' is required.")
    client = OidcClientSettings(**values)
    return replace(client, name=client.name or client.id)


def changed_client(current: OidcClientSettings, data: Mapping[str, object]) -> OidcClientSettings:
    """PATCH: the fields given replace the current ones; the id and whether it is public stay."""
    for fixed in ("id", "public"):  # a public client has no secret to keep, a confidential one needs one
        if fixed in data and data[fixed] != getattr(current, fixed):
            raise invalid_request(f"The field '{fixed}' cannot change: make a new client instead.")
    client = replace(current, **_read(data))
    return replace(client, name=client.name or client.id)


def check(client: OidcClientSettings, production: bool) -> None:
    """The rules start-up applies to `[[oidc.clients]]`; the first one broken is the answer."""
    candidate = client if client.public else replace(client, secret_sha256=_SOME_SECRET)
    for problem in client_problems(candidate, production):
        raise invalid_request(f"The field '{problem.field}' is refused: {problem.text}.")


def _read(data: Mapping[str, object]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in _GENERATED:
            raise invalid_request(f"The field '{name}' is not accepted: the answer carries a generated secret.")
        meta = _KINDS.get(name)
        if meta is None:
            raise invalid_request(f"Unknown field '{printable(name)}'.")
        if not _fits(value):
            raise invalid_request(
                f"The field '{name}' is too long (strings up to {MAX_TEXT} characters, lists up to {MAX_ITEMS})"
                " or holds characters that are not allowed."
            )
        try:
            values[name] = meta.kind.parse(value)
        except (ValueError, TypeError):
            raise invalid_request(f"The field '{name}' must be {meta.kind.expected}.") from None
    return values


def _fits(value: object) -> bool:
    if isinstance(value, list):
        return len(value) <= MAX_ITEMS and all(_fits(v) for v in value if not isinstance(v, list))
    if isinstance(value, str):
        return len(value) <= MAX_TEXT and storable(value)
    return True
