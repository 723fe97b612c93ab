"""Made-up credential IDs for sign-in options with an address that has no passkey, so that the
answer's shape tells nothing about whether an account exists (API.md)."""

from __future__ import annotations

import hashlib
import hmac

from passwordless.platform.crypto import PASSKEY_DECOY, subkey

# Decoys look like what real authenticators make. Credential ID lengths in bytes, weighted out of
# 256: 16 (Google Password Manager, Chrome's virtual authenticator, many security keys' discoverable
# credentials), 20 (iCloud Keychain), 32 (Windows Hello, software authenticators such as
# py_webauthn's test keys), 64 (security keys' server-side credentials). Counts weighted like
# accounts: most people hold one passkey, some two, a few three.
DECOY_LENGTHS = ((16, 96), (20, 56), (32, 72), (64, 32))
DECOY_COUNTS = ((1, 150), (2, 76), (3, 30))

def decoy_ids(secret: str, email: str) -> list[bytes]:
    """The same made-up credential IDs for an address every time, as real ones would be: a secret
    seed per address, stretched into a count, a length per ID and the IDs' bytes."""
    seed = hmac.new(subkey(secret, PASSKEY_DECOY), b"passkey-decoy:" + email.encode(), hashlib.sha256).digest()
    longest = max(length for length, _ in DECOY_LENGTHS)
    stream = hashlib.shake_256(seed).digest(4 + 3 * longest)
    count = _weighted_pick(stream[0], DECOY_COUNTS)
    ids = []
    for i in range(count):
        start = 4 + i * longest
        ids.append(stream[start:start + _weighted_pick(stream[1 + i], DECOY_LENGTHS)])
    return ids


def _weighted_pick(byte: int, weighted: tuple[tuple[int, int], ...]) -> int:
    """The value whose share of 0..255 holds `byte` (the weights add up to 256)."""
    for value, weight in weighted:
        if byte < weight:
            return value
        byte -= weight
    raise AssertionError("weights must add up to 256")
