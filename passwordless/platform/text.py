"""Text that came in a request, checked the same wherever it is read (web/request.py's JSON
fields, clients/rules.py's client bodies)."""

from __future__ import annotations


def storable(value: str) -> bool:
    """No NUL (PostgreSQL cannot hold it) and no lone surrogate (JSON escapes allow one; it is
    not UTF-8, so no database can hold it either)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(name: str) -> str:
    """A name from a request as an error message may quote it: 64 characters, none unprintable."""
    return "".join(c if c.isprintable() else "?" for c in name[:64])
