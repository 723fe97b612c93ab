"""Each feature's dependencies hang on the app's state under the feature's name (app.py, the
composition root, puts them there); a route takes its own part, typed, and knows no other."""

from __future__ import annotations

from typing import TypeVar

from starlette.requests import HTTPConnection

T = TypeVar("T")


def part(request: HTTPConnection, name: str, kind: type[T]) -> T:
    found = getattr(request.app.state, name, None)
    if not isinstance(found, kind):  # a wiring mistake in app.py, caught by the first request
        raise TypeError(f"app.state.{name} is {type(found).__name__}, not {kind.__name__}")
    return found
