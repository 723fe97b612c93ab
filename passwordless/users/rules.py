"""Rules about users that every sign-in method shares: what counts as an email address, and a
short name for a browser."""

from __future__ import annotations

import re

from passwordless.platform.errors import ApiError

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
