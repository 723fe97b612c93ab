"""What a passkey looks like in JSON answers: its own routes and the admin API show the same object
(API.md, "Passkey object")."""

from __future__ import annotations

from typing import Any

from passwordless.passkeys.store import Passkey
from passwordless.web.openapi import array, integer, nullable, obj, string


def passkey_json(p: Passkey) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "created_at": p.created_at,
        "last_used_at": p.last_used_at,
        "aaguid": p.aaguid,
        "backed_up": p.backed_up,
        "transports": list(p.transports),
    }


# The same object in the OpenAPI document.
PASSKEY = obj({
    "id": string(), "name": string(), "created_at": integer(), "last_used_at": nullable(integer()),
    "aaguid": string(), "backed_up": {"type": "boolean"}, "transports": array(string()),
})
