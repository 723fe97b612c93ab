"""The kinds of value a setting can hold: how each is read from TOML and from an environment
variable, what is expected of it, and how it is written back out."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

_DURATION = re.compile(r"^(\d{1,9})(ms|s|m|h|d)$")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class Rate:
    """At most `count` events per `per_seconds`."""

    count: int
    per_seconds: float


class Kind(Generic[T]):
    """A value kind. `parse` raises ValueError when a value does not fit."""

    expected = "a value"

    def parse(self, value: object) -> T:
        raise NotImplementedError

    def parse_env(self, text: str) -> T:
        return self.parse(text)

    def render(self, value: T) -> object:
        """The TOML form of a parsed value."""
        return value

    # A value that may carry a password inside it (a database URL): check-config shows it
    # `masked`, and a value that does not parse is not echoed in the error.
    carries_password = False

    def masked(self, value: T) -> object:
        return self.render(value)


class Text(Kind[str]):
    def __init__(self, expected: str = "a string", pattern: str | None = None) -> None:
        self.expected = expected
        self._pattern = re.compile(pattern) if pattern else None

    def parse(self, value: object) -> str:
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError
        if self._pattern and value and not self._pattern.fullmatch(value):
            raise ValueError
        return value


class Integer(Kind[int]):
    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.expected = f"an integer from {low} to {high}"

    def parse(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
        if not self.low <= value <= self.high:
            raise ValueError
        return value

    def parse_env(self, text: str) -> int:
        if not re.fullmatch(r"-?\d{1,12}", text.strip()):
            raise ValueError
        return self.parse(int(text))


class Boolean(Kind[bool]):
    expected = "true or false"

    def parse(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise ValueError
        return value

    def parse_env(self, text: str) -> bool:
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        try:
            return words[text.strip().lower()]
        except KeyError:
            raise ValueError from None


class Choice(Kind[str]):
    def __init__(self, *options: str) -> None:
        self.options = options
        self.expected = "one of " + ", ".join(f'"{o}"' for o in options)

    def parse(self, value: object) -> str:
        if value not in self.options:
            raise ValueError
        assert isinstance(value, str)
        return value


class Duration(Kind[float]):
    """Seconds, written "500ms", "90s", "15m", "12h" or "30d"."""

    expected = 'a duration like "90s", "15m", "12h" or "30d"'

    def parse(self, value: object) -> float:
        match = _DURATION.fullmatch(value) if isinstance(value, str) else None
        if not match or int(match[1]) == 0:
            raise ValueError
        return int(match[1]) * _UNIT_SECONDS[match[2]]

    def render(self, value: float) -> object:
        for unit, size in _UNIT_SECONDS.items():
            if value >= size and (value / size).is_integer():
                return f"{int(value / size)}{unit}"
        return f"{round(value * 1000)}ms"


class RateKind(Kind[Rate]):
    expected = 'a rate like "5/15m" (count/duration)'

    def parse(self, value: object) -> Rate:
        if not isinstance(value, str) or value.count("/") != 1:
            raise ValueError
        count, per = value.split("/")
        if not count.isdigit() or int(count) < 1:
            raise ValueError
        return Rate(int(count), Duration().parse(per))

    def render(self, value: Rate) -> object:
        return f"{value.count}/{Duration().render(value.per_seconds)}"


class TextList(Kind[tuple[str, ...]]):
    """A list of strings; from the environment, a comma-separated list."""

    def __init__(self, item: Kind[str]) -> None:
        self.item = item
        self.expected = f"a list, each item {item.expected}"

    def parse(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError
        return tuple(self.item.parse(v) for v in value)

    def parse_env(self, text: str) -> tuple[str, ...]:
        return tuple(self.item.parse(part.strip()) for part in text.split(",") if part.strip())

    def render(self, value: tuple[str, ...]) -> object:
        return list(value)


class Url(Kind[str]):
    """An absolute http(s) URL. `origin_only` refuses a path, query or fragment."""

    def __init__(self, origin_only: bool = False) -> None:
        self.origin_only = origin_only
        self.expected = (
            "an origin like https://app.example.com (scheme, host and optional port)"
            if origin_only
            else "an absolute http:// or https:// URL"
        )

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError
        if parts.username or parts.password or any(c.isspace() for c in value):
            raise ValueError
        parts.port  # noqa: B018 - raises ValueError for a bad port
        if self.origin_only and (parts.path not in ("", "/") or parts.query or parts.fragment):
            raise ValueError
        return origin_of(value) if self.origin_only else value


class DatabaseUrl(Kind[str]):
    """A PostgreSQL connection URL (postgresql:// or postgres://). `masked` hides its password."""

    expected = "a URL like postgresql://user:password@host:5432/database"

    def parse(self, value: object) -> str:
        if not isinstance(value, str) or any(c.isspace() for c in value):
            raise ValueError
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
            raise ValueError
        parts.port  # noqa: B018 - raises ValueError for a bad port
        return value

    carries_password = True

    def masked(self, value: str) -> object:
        parts = urlsplit(value)
        if parts.password is None:
            return value
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{user}:********@{host}").geturl()


class Network(Kind[str]):
    expected = "an IP address or network like 10.0.0.0/8"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError
        return str(ipaddress.ip_network(value.strip(), strict=False))


def origin_of(url: str) -> str:
    """scheme://host[:port] as browsers send it: lower case, no default port."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


class OrEmpty(Kind[str]):
    """The inner kind, or "" for "not set" (the default is then derived or off)."""

    def __init__(self, inner: Kind[str]) -> None:
        self.inner = inner
        self.expected = inner.expected
        self.carries_password = inner.carries_password

    def parse(self, value: object) -> str:
        return "" if value == "" else self.inner.parse(value)

    def masked(self, value: str) -> object:
        return "" if value == "" else self.inner.masked(value)


class OrDefault(Kind[float]):
    """A duration, or "" for "derived from another key" (held as 0 until derived)."""

    def __init__(self, inner: Kind[float]) -> None:
        self.inner = inner
        self.expected = inner.expected

    def parse(self, value: object) -> float:
        return 0.0 if value == "" else self.inner.parse(value)

    def render(self, value: float) -> object:
        return "" if not value else self.inner.render(value)
