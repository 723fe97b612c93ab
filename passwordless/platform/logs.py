"""Logging: text for people, or one JSON object per line for machines. Every line carries the
request id of the request it belongs to. Callers put context in `extra`, never a secret."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import TextIO

# The id of the request being served; a ContextVar is per task, so concurrent requests never mix.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's duplicate of the message, with terminal colours
}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    rid = request_id.get()
    if rid:
        extras.setdefault("request_id", rid)
    return extras


def _timestamp(record: logging.LogRecord) -> str:
    second = int(record.created)
    return f"{_second(second)}.{int((record.created - second) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def _one_line(value: object) -> str:
    """A value as it may stand in a text log line: quoted and escaped if it holds a space, a
    quote or a control character, so a request can never start a forged line."""
    text = str(value)
    if _PLAIN.fullmatch(text) or (text and all(c.isprintable() and c not in ' "=' for c in text)):
        return text
    return json.dumps(text)


_PLAIN = re.compile(r"[!#-<>-~]+")  # printable ASCII but space, '"' and '=': the common case, checked at once


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_one_line(v)}" for k, v in _extras(record).items())
        message = record.getMessage()
        message = message if message.isprintable() else json.dumps(message)
        text = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {message}"
        text = f"{text}  {fields}" if fields else text
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # No formatter here prints the caller's file and line, thread or process: not looking them
    # up for every record saves a stack walk per access-log line (the logging HOWTO's advice).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Uvicorn's access log prints query strings, which can hold a sign-in token: we log our own.
    logging.getLogger("uvicorn.access").disabled = True
