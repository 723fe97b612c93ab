"""Standard Webhooks signatures: HMAC-SHA256 of "id.timestamp.body", keyed with the
base64-decoded part of the whsec_ secret, sent as "v1,<base64>"."""

from __future__ import annotations

import base64
import hashlib
import hmac


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
