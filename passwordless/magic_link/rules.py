"""Input rules of email sign-in: what counts as an email address and as an allowed redirect."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from passwordless.config_kinds import origin_of
from passwordless.errors import ApiError

MAX_EMAIL = 254
# No spaces, controls, quotes, brackets or separators: an address that is safe in a header.
_EMAIL = re.compile(r"[^\s@<>()\[\]\\,;:\"']{1,64}@[^\s@<>()\[\]\\,;:\"'/]+\.[^\s@<>()\[\]\\,;:\"'/.]{2,}")


def normalise_email(raw: str) -> str:
    email = raw.strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email) or not email.isprintable():
        raise ApiError(400, "invalid_email", "Enter a valid email address.")
    domain = email.rsplit("@", 1)[1]
    if any(not label or label.startswith("-") or label.endswith("-") for label in domain.split(".")):
        raise ApiError(400, "invalid_email", "Enter a valid email address.")
    return email


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


def browser_name(user_agent: str) -> str:
    """A short, recognisable name for a user agent ("Firefox on Linux"), for emails and lists."""
    ua = user_agent or ""
    browser = next(
        (name for token, name in _BROWSERS if token in ua),
        "an unknown browser",
    )
    system = next((name for token, name in _SYSTEMS if token in ua), "")
    return f"{browser} on {system}" if system else browser


_BROWSERS = (
    ("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"), ("Safari/", "Safari"), ("curl/", "curl"),
)
_SYSTEMS = (
    ("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"), ("Windows", "Windows"),
    ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"),
)
