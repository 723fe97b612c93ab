"""Input rules of email sign-in: what counts as an allowed redirect."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from passwordless.config.kinds import origin_of
from passwordless.platform.errors import ApiError


def check_redirect(redirect_to: str | None, allowed: Iterable[str]) -> None:
    """`redirect_to` must start with an allowed prefix: the same scheme, host and port, and a
    path under the prefix's path. No user info, no dot segments, nothing a browser reads
    differently from us."""
    if redirect_to is None:
        return
    if not any(_fits(redirect_to, prefix) for prefix in allowed):
        raise ApiError(400, "redirect_not_allowed", "This redirect_to is not an allowed address.")


def _fits(url: str, prefix: str) -> bool:
    if any(c.isspace() or c == "\\" or not c.isprintable() for c in url):
        return False
    try:
        parts, want = urlsplit(url), urlsplit(prefix)
        if parts.scheme not in ("http", "https") or parts.username is not None or parts.password is not None:
            return False
        if not parts.hostname or origin_of(url) != origin_of(prefix):
            return False
    except (ValueError, KeyError):
        return False
    segments = unquote(parts.path).split("/")
    if any(s in (".", "..") for s in segments):
        return False
    return (parts.path or "/").startswith(want.path or "/")
