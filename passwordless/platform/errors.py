"""Errors are data: a stable code, an HTTP status and a message that is safe to show a client.
Services raise ApiError; the one handler in web.py renders it as
{"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def invalid_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)
