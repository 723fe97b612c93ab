"""Reading request bodies strictly: JSON objects only, typed fields, nothing left over."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from passwordless.platform.errors import ApiError, invalid_request
from passwordless.platform.text import printable, storable


async def read_json(request: Request) -> dict[str, object]:
    """The body as a JSON object: 415 for another content type, 400 for anything malformed."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, absurd numbers or nesting
        raise invalid_request("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.")
    return data


class Fields:
    """Takes typed fields out of a JSON object; `done()` refuses any field left over."""


    def __init__(self, data: Mapping[str, object]) -> None:
        self._data = data
        self._taken: set[str] = set()


    def text(self, name: str, max_length: int) -> str:
        value = self.optional_text(name, max_length)
        if value is None:
            raise invalid_request(f"The field '{name}' is required.")
        return value


    def optional_text(self, name: str, max_length: int) -> str | None:
        self._taken.add(name)
        value = self._data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid_request(f"The field '{name}' must be a string.")
        if len(value) > max_length:
            raise invalid_request(f"The field '{name}' is longer than {max_length} characters.")
        if not storable(value):
            raise invalid_request(f"The field '{name}' holds characters that are not allowed.")
        return value


    def optional_object(self, name: str) -> dict[str, Any] | None:
        self._taken.add(name)
        value = self._data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid_request(f"The field '{name}' must be an object.")
        return value


    def done(self) -> None:
        unknown = sorted(set(self._data) - self._taken)
        if unknown:
            raise invalid_request(f"Unknown field '{printable(unknown[0])}'.")
