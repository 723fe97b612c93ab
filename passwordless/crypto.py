"""Secrets: generating them, and the development secret kept beside the database."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

logger = logging.getLogger(__name__)

DEV_SECRET_FILE = "secret.key"


def new_secret() -> str:
    """256 random bits, URL-safe base64: 43 characters."""
    return secrets.token_urlsafe(32)


def load_or_create_dev_secret(data_dir: Path) -> str:
    """The development secret: made once, kept in data_dir/secret.key with mode 0600."""
    path = data_dir / DEV_SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text(encoding="ascii").strip()
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
