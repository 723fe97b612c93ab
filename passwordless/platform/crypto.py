"""Random secrets, their hashes, ids, and the development secret kept beside the database."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import stat
import threading
import time
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from passwordless.platform import private_files

logger = logging.getLogger(__name__)

DEV_SECRET_FILE = "secret.key"


def new_secret() -> str:
    """256 random bits, URL-safe base64: 43 characters."""
    return secrets.token_urlsafe(32)


def load_or_create_dev_secret(data_dir: Path) -> str:
    """The development secret: made once, kept in data_dir/secret.key with mode 0600. A key file
    others could read, or a symlink (which could point anywhere), is refused with ValueError."""
    path = data_dir / DEV_SECRET_FILE
    private_files.folder(data_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = _read_private(path)
        if len(secret) >= 32:
            logger.warning(
                "dev_secret_in_use",
                extra={"path": str(path), "hint": "set jwt.secret before going to production"},
            )
            return secret
        raise ValueError(f"{path} holds no usable secret; delete it to have a new one made") from None
    secret = new_secret()
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secret + "\n")
    logger.warning(
        "dev_secret_generated",
        extra={"path": str(path), "hint": "development only: set jwt.secret in production"},
    )
    return secret


def _read_private(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if path.is_symlink():
            raise ValueError(f"{path} is a symlink: refused (make it a plain file, mode 0600)") from None
        raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, encoding="ascii") as file:
        mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
        if mode & 0o077:
            raise ValueError(f"{path} is readable by others (mode {mode:o}): refused; chmod 600 it or delete it")
        return file.read().strip()


class _RandomPool(threading.local):
    """Bytes from the kernel's CSPRNG (os.urandom), fetched 4 KB at a time and each handed out
    once. A sign-in draws several random values; one getrandom call apiece let another
    thread take the interpreter lock each time, and the event loop then waited for it back.
    One pool per thread (no lock), emptied in a forked child so no byte is used twice."""

    def __init__(self) -> None:
        self.empty()

    def empty(self) -> None:
        self.buffer, self.offset = b"", 0


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.empty)  # the forking thread's pool; others do not exist there


def random_bytes(n: int) -> bytes:
    pool = _pool
    if pool.offset + n > len(pool.buffer):
        pool.buffer, pool.offset = os.urandom(max(4096, n)), 0
    chunk = pool.buffer[pool.offset : pool.offset + n]
    pool.offset += n
    return chunk


def new_token() -> str:
    """An unguessable bearer secret (link token, refresh token): 256 random bits."""
    return b64url(random_bytes(32))


def b64url(data: bytes) -> str:
    """base64url without padding (tokens, JWT segments)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    """Strict base64url without padding: any other character is refused (ValueError), not skipped."""
    if not text.isascii() or "=" in text or len(text) % 4 == 1:
        raise ValueError("not base64url")
    standard = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    return binascii.a2b_base64(standard, strict_mode=True)


def token_hash(token: str) -> bytes:
    """What is stored instead of a token: its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def new_code() -> str:
    """A six-digit one-time code, uniform: 32-bit draws at or above the last whole multiple of
    a million are drawn again."""
    while (value := int.from_bytes(random_bytes(4), "big")) >= _CODE_LIMIT:
        pass
    return f"{value % 1_000_000:06d}"


_CODE_LIMIT = (2**32 // 1_000_000) * 1_000_000


# One label per use of jwt.secret: a key derived for one use tells nothing about the secret or
# about the key of any other use (HKDF outputs under distinct labels are independent).
HS256_SIGNING = "hs256-access-token-key"
HS256_KID = "hs256-kid"
CODE_HMAC = "sign-in-code-hmac"
SESSION_COOKIE = "session-cookie"
PASSKEY_DECOY = "passkey-decoy"


@lru_cache(maxsize=16)
def subkey(secret: str, use: str) -> bytes:
    """The 256-bit key for one use of the server secret: HKDF-SHA256 (RFC 5869), no salt (the
    secret is already uniformly random), info "passwordless <use>"."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"passwordless {use}".encode())
    return hkdf.derive(secret.encode())


def hs256_key(secret: str) -> str:
    """The key access tokens are signed with in HS256 mode, printed by `passwordless keys
    hs256-key` for relying apps. Text (43 base64url characters, 256 bits), whose UTF-8 bytes
    are the HMAC key: so it can be pasted as the "secret" of any JWT library as it is."""
    return b64url(subkey(secret, HS256_SIGNING))


def code_hash(secret: str, ticket_id: str, code: str) -> bytes:
    """Six digits can be tried offline in a blink, so codes are keyed with a key derived from
    the server secret (and the ticket id, so one code never hashes alike on two tickets)."""
    return hmac.digest(subkey(secret, CODE_HMAC), f"{ticket_id}:{code}".encode(), "sha256")


def same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


_RANDOM_BITS = 74
_ids = threading.Lock()
_last_id = 0  # (milliseconds << 74 | random) of the last id made by this process


def new_id() -> str:
    """A UUIDv7: time-ordered (milliseconds), with 74 random bits, and increasing within this
    process even inside one millisecond (RFC 9562 §6.2: the random part counts up from the last
    one), so ids sort in the order they were made: the audit log's order, on either engine.
    Formatted by hand (every request makes a few; going through uuid.UUID takes twice as long)."""
    global _last_id
    key = (time.time_ns() // 1_000_000) << _RANDOM_BITS | int.from_bytes(random_bytes(10), "big") >> 6
    with _ids:
        key = _last_id = max(key, _last_id + 1)
    low = key & ((1 << _RANDOM_BITS) - 1)
    value = (key >> _RANDOM_BITS) << 80 | 0x7 << 76 | (low >> 62) << 64 | 0x2 << 62 | low & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
