"""configure_logging and the two formats: one JSON object per line, or one text line with
key=value context; every line carries the request id of the request it belongs to."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from passwordless.platform.logs import configure_logging, request_id

UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back so other tests are unaffected."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_uvicorn = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate, logging.getLogger(name).disabled)
        for name in UVICORN
    }
    try:
        yield
    finally:
        root.handlers = saved_root[0]
        root.setLevel(saved_root[1])
        for name, (handlers, propagate, disabled) in saved_uvicorn.items():
            logger = logging.getLogger(name)
            logger.handlers = handlers
            logger.propagate = propagate
            logger.disabled = disabled


@pytest.fixture
def rid() -> Iterator[str]:
    token = request_id.set("req-7f3a")
    try:
        yield "req-7f3a"
    finally:
        request_id.reset(token)


def configured(fmt: str, level: str = "info") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, stream)
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n") or text == ""
    return [json.loads(line) for line in text.splitlines()]


log = logging.getLogger("passwordless.test_logs")


# --- JSON ---


def test_json_is_one_object_per_line() -> None:
    stream = configured("json")
    before = time.time()
    log.info("user_signed_in", extra={"user_id": "u1", "attempts": 3, "ok": True})
    log.warning("rate_limited %s", "per_ip", extra={"scope": "ip"})
    after = time.time()

    first, second = json_lines(stream)
    assert first["level"] == "info"
    assert first["logger"] == "passwordless.test_logs"
    assert first["message"] == "user_signed_in"
    assert (first["user_id"], first["attempts"], first["ok"]) == ("u1", 3, True)
    assert "request_id" not in first  # no request in flight
    assert "exception" not in first
    for internal in ("args", "msg", "levelno", "pathname", "exc_info", "created"):
        assert internal not in first

    assert second["level"] == "warning"
    assert second["message"] == "rate_limited per_ip"
    assert second["scope"] == "ip"

    stamp = first["timestamp"]
    assert isinstance(stamp, str) and stamp.endswith("Z")
    moment = datetime.fromisoformat(stamp)
    assert moment.tzinfo is not None and moment.utcoffset() == timezone.utc.utcoffset(None)
    assert before - 1 <= moment.timestamp() <= after + 1


def test_json_carries_the_request_id(rid: str) -> None:
    stream = configured("json")
    log.info("request")
    (line,) = json_lines(stream)
    assert line["request_id"] == rid


def test_json_request_ids_do_not_leak_past_the_request() -> None:
    stream = configured("json")
    token = request_id.set("req-one")
    log.info("inside")
    request_id.reset(token)
    log.info("outside")
    inside, outside = json_lines(stream)
    assert inside["request_id"] == "req-one"
    assert "request_id" not in outside


def test_json_exception_holds_the_traceback(rid: str) -> None:
    stream = configured("json")
    try:
        raise ValueError("kaput")
    except ValueError:
        log.exception("unhandled_error", extra={"path": "/x"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1  # the traceback stays inside the one JSON object
    line = json.loads(lines[0])
    assert line["level"] == "error"
    assert line["message"] == "unhandled_error"
    assert line["request_id"] == rid
    assert line["path"] == "/x"
    exception = str(line["exception"])
    assert "Traceback" in exception and "ValueError: kaput" in exception


def test_json_survives_odd_values() -> None:
    stream = configured("json")
    log.info(
        "odd",
        extra={"path": Path("/tmp/x"), "when": datetime(2024, 1, 2, tzinfo=timezone.utc), "text": 'q"\n\u00e9'},
    )
    (line,) = json_lines(stream)
    assert line["path"] == "/tmp/x"
    assert str(line["when"]).startswith("2024-01-02")
    assert line["text"] == 'q"\n\u00e9'


# --- text ---


def test_text_is_one_line_with_key_value_extras(rid: str) -> None:
    stream = configured("text")
    log.info("user_signed_in", extra={"user_id": "u1", "attempts": 3})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert "INFO" in line
    assert "passwordless.test_logs" in line
    assert "user_signed_in" in line
    assert "user_id=u1" in line and "attempts=3" in line
    assert f"request_id={rid}" in line
    stamp = line.split(" ", 1)[0]
    assert stamp.endswith("Z")
    assert abs(datetime.fromisoformat(stamp).timestamp() - time.time()) < 5


def test_text_without_extras_or_request_has_no_dangling_fields() -> None:
    stream = configured("text")
    log.warning("plain")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("plain")
    assert "request_id" not in line


def test_text_exception_appends_the_traceback() -> None:
    stream = configured("text")
    try:
        raise KeyError("missing")
    except KeyError:
        log.exception("failed")
    text = stream.getvalue()
    first, *rest = text.splitlines()
    assert "ERROR" in first and "failed" in first
    assert "Traceback" in text and "KeyError: 'missing'" in text
    assert rest


def test_text_values_cannot_forge_lines() -> None:
    """A value from a request (a decoded path, a user agent) must not start a new log line."""
    stream = configured("text")
    log.info("request", extra={"path": "/x\n2030-01-01T00:00:00.000Z ERROR  forged: admin_login", "status": 404})
    assert len(stream.getvalue().splitlines()) == 1, stream.getvalue()


# --- levels and handlers ---


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_level_filters(fmt: str) -> None:
    stream = configured(fmt, "warning")
    log.debug("dbg_event")
    log.info("info_event")
    log.warning("warn_event")
    log.error("err_event")
    text = stream.getvalue()
    assert "dbg_event" not in text and "info_event" not in text
    assert "warn_event" in text and "err_event" in text
    assert len(text.splitlines()) == 2


def test_debug_level_shows_debug() -> None:
    stream = configured("json", "debug")
    log.debug("dbg_event")
    assert [line["message"] for line in json_lines(stream)] == ["dbg_event"]


def test_error_level_hides_warnings() -> None:
    stream = configured("json", "error")
    log.warning("warn_event")
    log.error("err_event")
    assert [line["message"] for line in json_lines(stream)] == ["err_event"]


def test_reconfiguring_replaces_the_handler() -> None:
    old = configured("json")
    new = configured("json")
    log.info("once")
    assert old.getvalue() == ""
    assert len(json_lines(new)) == 1


def test_uvicorn_logs_go_through_our_format_but_its_access_log_is_off() -> None:
    logging.getLogger("uvicorn.error").addHandler(logging.StreamHandler(io.StringIO()))
    stream = configured("json")
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    # uvicorn's access log line holds the query string, which can carry a sign-in token
    logging.getLogger("uvicorn.access").info('1.2.3.4 - "GET /auth/magic-link/verify?token=SECRET HTTP/1.1" 200')
    lines = json_lines(stream)
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", "Application startup complete.")
    ]
    assert "SECRET" not in stream.getvalue()
