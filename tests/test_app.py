"""The app in-process with its lifespan and a real SQLite file: health routes, the headers and
error shape of every response, body limits, strict JSON reading, CORS, the access log and the
development secret (API.md "Headers on every response", "Errors", "Health and metrics")."""

from __future__ import annotations

import io
import json
import logging
import re
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from passwordless import __version__
from passwordless.platform.crypto import DEV_SECRET_FILE
from passwordless.platform.logs import JsonFormatter, TextFormatter
from passwordless.web import request as web
from tests.conftest import MakeConfig
from tests.support.app import deps_of, running
from tests.support.engine import connection
from tests.support.signin import assert_error

pytestmark = pytest.mark.anyio

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SECRET_DETAIL = "boom secret detail"


# --- test-only routes, added after startup: the real middleware and handlers still apply ---


async def boom(request: Request) -> Response:
    raise RuntimeError(SECRET_DETAIL)


async def body_length(request: Request) -> Response:
    return JSONResponse({"length": len(await request.body())})


async def sign_in_form(request: Request) -> Response:
    data = await web.read_json(request)
    fields = web.Fields(data)
    email = fields.text("email", 254)
    redirect_to = fields.optional_text("redirect_to", 2048)
    fields.done()
    return JSONResponse({"email": email, "redirect_to": redirect_to})


async def html_page(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>page</title><p>hello</p>")


def add_test_routes(app: Starlette) -> None:
    app.router.routes.extend(
        [
            Route("/test/boom", boom, methods=["GET"]),
            Route("/test/body", body_length, methods=["POST"]),
            Route("/test/json", sign_in_form, methods=["POST"]),
            Route("/test/html", html_page, methods=["GET"]),
        ]
    )


@pytest.fixture
def routed(app: Starlette, client: httpx.AsyncClient) -> httpx.AsyncClient:
    add_test_routes(app)
    return client


@pytest.fixture
async def small_limit(make_config: MakeConfig) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose body limit is 1024 bytes, with the test routes."""
    async with running(make_config("[server]\nmax_body_bytes = 1024")) as (app, client):
        add_test_routes(app)
        yield client


@pytest.fixture
def json_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """What an operator would read with log.format = "json": lines formatted as they are emitted,
    while the request's context (its request id) is current."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("passwordless")
    caplog.set_level(logging.INFO, logger="passwordless")  # caplog restores the level afterwards
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def log_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def db_file(app: Starlette) -> Path:
    return Path(deps_of(app).config.database.path)


# --- health ---


async def test_liveness_is_alive(client: httpx.AsyncClient) -> None:
    r = await client.get("/liveness")
    assert r.status_code == 200
    assert r.json() == {"status": "alive"}


async def test_readiness_is_ready_after_startup(client: httpx.AsyncClient) -> None:
    r = await client.get("/readiness")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


async def test_health_reports_every_check(client: httpx.AsyncClient) -> None:
    before = time.time()
    r = await client.get("/health")
    after = time.time()
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"status", "version", "uptime_seconds", "timestamp", "checks"}
    assert body["status"] == "healthy"
    assert body["version"] == __version__
    assert isinstance(body["uptime_seconds"], int) and 0 <= body["uptime_seconds"] < 60
    assert isinstance(body["timestamp"], int)
    assert int(before) - 1 <= body["timestamp"] <= after + 1
    assert body["checks"] == {"database": "ok", "email_queue": "ok"}


async def test_readiness_refuses_while_draining(app: Starlette, client: httpx.AsyncClient) -> None:
    deps_of(app).lifecycle.draining = True
    r = await client.get("/readiness")
    assert r.status_code == 503
    assert r.json() == {"status": "not_ready", "reason": "draining"}
    # liveness is about the event loop only: still alive while draining
    assert (await client.get("/liveness")).status_code == 200


async def test_readiness_refuses_while_migrations_are_pending(app: Starlette, client: httpx.AsyncClient) -> None:
    with connection(deps_of(app).config) as conn:
        deleted = conn.execute(
            "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)"
        ).rowcount
    assert deleted == 1
    r = await client.get("/readiness")
    assert r.status_code == 503
    assert r.json() == {"status": "not_ready", "reason": "migrations_pending"}


async def test_readiness_stays_while_a_newer_version_migrates_but_refuses_an_edited_migration(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    """A rolling update: the new version's migration runs while this version still serves (it keeps
    working: migrations keep the version before them working), so it stays ready. A migration
    whose recorded checksum differs from the file is another story."""
    with connection(deps_of(app).config) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (9999, 'newer', 'x', 1)"
        )
    r = await client.get("/readiness")
    assert r.status_code == 200, r.text
    with connection(deps_of(app).config) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 9999")
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    r = await client.get("/readiness")
    assert r.status_code == 503
    assert r.json() == {"status": "not_ready", "reason": "migrations_diverged"}


async def test_health_and_readiness_fail_once_the_database_is_closed(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await deps_of(app).db.close()
    r = await client.get("/health")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"] == "error"
    assert set(body) == {"status", "version", "uptime_seconds", "timestamp", "checks"}
    ready = await client.get("/readiness")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready"


# --- headers on every response ---


async def _response_of_each_kind(client: httpx.AsyncClient) -> dict[int, httpx.Response]:
    return {
        200: await client.get("/liveness"),
        404: await client.get("/no/such/route"),
        405: await client.post("/liveness"),
        413: await client.post("/liveness", content=b"x" * 2048),
        500: await client.get("/test/boom"),
    }


async def test_security_headers_on_every_response(small_limit: httpx.AsyncClient) -> None:
    responses = await _response_of_each_kind(small_limit)
    for status, r in responses.items():
        assert r.status_code == status, (status, r.text)
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (status, name, dict(r.headers))
        assert SANE_ID.fullmatch(r.headers.get("x-request-id", "")), (status, dict(r.headers))
        assert "strict-transport-security" not in r.headers, status  # public_url is http here


async def test_request_ids_are_fresh_per_request(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/liveness")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


async def test_sane_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    for rid in ("abc-123", "Trace.ID_42:7", "x" * 128):
        r = await client.get("/liveness", headers={"X-Request-ID": rid})
        assert r.headers["x-request-id"] == rid
    r = await client.get("/no/such/route", headers={"X-Request-ID": "lost-404"})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "lost-404"


@pytest.mark.parametrize(
    "insane",
    [
        b"x" * 129,
        b"has space",
        "caf\u00e9".encode(),  # non-ASCII bytes
        b"<script>",
        b"a;b",
        b"",
    ],
    ids=["too-long", "space", "non-ascii", "markup", "semicolon", "empty"],
)
async def test_insane_request_id_is_replaced(client: httpx.AsyncClient, insane: bytes) -> None:
    r = await client.get("/liveness", headers=[(b"X-Request-ID", insane)])
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert rid.encode("latin-1") != insane
    assert SANE_ID.fullmatch(rid)


async def test_hsts_only_when_public_url_is_https(make_config: MakeConfig, client: httpx.AsyncClient) -> None:
    plain = await client.get("/liveness")
    assert "strict-transport-security" not in plain.headers
    config = make_config('[server]\npublic_url = "https://auth.example.com"')
    async with running(config) as (_, https_client):
        for path in ("/liveness", "/no/such/route"):
            r = await https_client.get(path)
            max_age = re.search(r"max-age=(\d+)", r.headers.get("strict-transport-security", ""))
            assert max_age is not None, (path, dict(r.headers))
            assert int(max_age[1]) >= 31536000
            assert r.headers["x-frame-options"] == "DENY"


async def test_html_pages_get_a_strict_csp(routed: httpx.AsyncClient) -> None:
    r = await routed.get("/test/html")
    assert r.status_code == 200
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value


# --- the error shape ---


async def test_unknown_route_is_404_not_found(client: httpx.AsyncClient) -> None:
    r = await client.get("/no/such/route")
    assert_error(r, 404, "not_found")


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    r = await client.post("/liveness")
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in [m.strip() for m in r.headers["allow"].split(",")]


async def test_unhandled_error_is_a_bare_500_with_the_detail_only_in_the_log(
    routed: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, json_log: io.StringIO
) -> None:
    r = await routed.get("/test/boom", headers={"X-Request-ID": "req-boom-1"})
    assert_error(r, 500, "internal_error")
    for leak in (SECRET_DETAIL, "Traceback", "RuntimeError", "boom", ".py"):
        assert leak not in r.text
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value
    assert r.headers["x-request-id"] == "req-boom-1"

    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR and rec.exc_info]
    assert errors, caplog.text
    exc_type = errors[0].exc_info[0] if errors[0].exc_info else None
    assert exc_type is RuntimeError
    assert "Traceback" in caplog.text and SECRET_DETAIL in caplog.text

    lines = [line for line in log_lines(json_log) if "exception" in line]
    assert lines, json_log.getvalue()
    assert lines[0]["request_id"] == "req-boom-1"
    assert SECRET_DETAIL in str(lines[0]["exception"])
    assert "Traceback" in str(lines[0]["exception"])


# --- body limit ---


async def test_declared_body_over_the_limit_is_413(small_limit: httpx.AsyncClient) -> None:
    assert (await small_limit.post("/test/body", content=b"x" * 1024)).json() == {"length": 1024}
    for path in ("/test/body", "/test/json", "/liveness"):
        r = await small_limit.post(path, content=b"x" * 1025, headers={"content-type": "application/json"})
        assert_error(r, 413, "payload_too_large")


async def test_streamed_body_over_the_limit_is_413(small_limit: httpx.AsyncClient) -> None:
    async def chunks(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"y" * 300

    ok = await small_limit.post("/test/body", content=chunks(3))
    assert "content-length" not in ok.request.headers
    assert ok.json() == {"length": 900}

    r = await small_limit.post("/test/body", content=chunks(10))
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "payload_too_large")

    r = await small_limit.post("/test/json", content=chunks(10), headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")


async def test_default_limit_is_64_kib(routed: httpx.AsyncClient) -> None:
    assert (await routed.post("/test/body", content=b"x" * 65536)).status_code == 200
    assert_error(await routed.post("/test/body", content=b"x" * 65537), 413, "payload_too_large")


# --- reading JSON strictly ---

JSON = {"content-type": "application/json"}


async def test_valid_json_body_is_read(routed: httpx.AsyncClient) -> None:
    r = await routed.post("/test/json", json={"email": "a@example.com"})
    assert r.status_code == 200, r.text
    assert r.json() == {"email": "a@example.com", "redirect_to": None}
    body = {"email": "\u00e9l\u00e8ve@example.com", "redirect_to": "https://app.example.com/after"}
    r = await routed.post(
        "/test/json",
        content=json.dumps(body).encode(),
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == body
    r = await routed.post("/test/json", content=json.dumps({"email": "e" * 254}).encode(), headers=JSON)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"email": ', id="truncated"),
        pytest.param(b"", id="empty"),
        pytest.param(b"{'email': 'a@example.com'}", id="single-quotes"),
        pytest.param(b'{"email": "\xff\xfe"}', id="bad-utf8"),
        pytest.param(b'["a@example.com"]', id="array"),
        pytest.param(b'"a@example.com"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"42", id="number"),
        pytest.param(b'{"email": 42}', id="wrong-type-number"),
        pytest.param(b'{"email": ["a@example.com"]}', id="wrong-type-list"),
        pytest.param(b'{"email": {"x": 1}}', id="wrong-type-object"),
        pytest.param(b'{"email": true}', id="wrong-type-bool"),
        pytest.param(b'{"email": "a@example.com", "redirect_to": 7}', id="optional-wrong-type"),
        pytest.param(b'{"email": "a@example.com", "admin": true}', id="unknown-field"),
        pytest.param(b'{"email": "a@example.com", "\\ud800": 1}', id="unknown-surrogate-field"),
        pytest.param(b"{}", id="missing-required"),
        pytest.param(b'{"redirect_to": "https://app.example.com/"}', id="missing-required-with-other"),
        pytest.param(b'{"email": null}', id="required-null"),
        pytest.param(json.dumps({"email": "e" * 255}).encode(), id="too-long"),
        pytest.param(
            json.dumps({"email": "a@example.com", "redirect_to": "https://x/" + "p" * 2048}).encode(),
            id="optional-too-long",
        ),
        pytest.param(b'{"email": "a\\ud800@example.com"}', id="lone-surrogate-escape"),
        pytest.param(b'{"email": "a\xed\xa0\x80@example.com"}', id="lone-surrogate-bytes"),
        pytest.param(b'{"email": "a\\u0000b@example.com"}', id="nul"),
        pytest.param(b"[" * 50_000, id="deep-array"),
        pytest.param(b'{"a":' * 12_000, id="deep-object"),
        pytest.param(b'{"email": ' + b"1" * 5000 + b"}", id="huge-int"),
        pytest.param(b"1" * 5000, id="huge-int-body"),
        pytest.param(b'{"email": 1e999999}', id="huge-float"),
        pytest.param(b'{"email": NaN}', id="nan"),
    ],
)
async def test_bad_json_bodies_are_400(routed: httpx.AsyncClient, content: bytes) -> None:
    r = await routed.post("/test/json", content=content, headers=JSON)
    assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"content-type": "text/plain"}, id="text-plain"),
        pytest.param({"content-type": "application/x-www-form-urlencoded"}, id="form"),
        pytest.param({"content-type": "application/jsonx"}, id="lookalike"),
        pytest.param({}, id="none"),
    ],
)
async def test_json_endpoint_refuses_other_content_types(
    routed: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await routed.post("/test/json", content=b'{"email": "a@example.com"}', headers=headers)
    assert_error(r, 415, "unsupported_media_type")


# --- CORS ---

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}


async def test_cors_preflight_from_an_allowed_origin(make_config: MakeConfig) -> None:
    config = make_config('[cors]\nallowed_origins = ["https://app.example.com"]')
    async with running(config) as (_, client):
        r = await client.options("/health", headers={"Origin": "https://app.example.com", **PREFLIGHT})
        assert r.status_code in (200, 204), r.text
        assert r.headers.get("access-control-allow-origin") == "https://app.example.com"
        assert "POST" in r.headers.get("access-control-allow-methods", "")
        assert r.headers["x-content-type-options"] == "nosniff"

        simple = await client.get("/liveness", headers={"Origin": "https://app.example.com"})
        assert simple.headers.get("access-control-allow-origin") == "https://app.example.com"
        assert "x-request-id" in simple.headers.get("access-control-expose-headers", "").lower()


async def test_cors_refuses_other_origins(make_config: MakeConfig) -> None:
    config = make_config('[cors]\nallowed_origins = ["https://app.example.com"]')
    async with running(config) as (_, client):
        for origin in ("https://evil.example.com", "https://app.example.com.evil.test", "null"):
            r = await client.options("/health", headers={"Origin": origin, **PREFLIGHT})
            assert "access-control-allow-origin" not in r.headers, (origin, dict(r.headers))
            simple = await client.get("/liveness", headers={"Origin": origin})
            assert "access-control-allow-origin" not in simple.headers, origin


async def test_cors_refused_preflight_uses_the_error_shape(make_config: MakeConfig) -> None:
    """API.md: every error is JSON with one shape — a refused preflight included."""
    config = make_config('[cors]\nallowed_origins = ["https://app.example.com"]')
    async with running(config) as (_, client):
        r = await client.options("/health", headers={"Origin": "https://evil.example.com", **PREFLIGHT})
        assert r.status_code >= 400
        assert r.headers["content-type"].startswith("application/json"), (r.status_code, r.text)
        assert set(r.json()) == {"error"}


async def test_no_cors_headers_without_cors_config(client: httpx.AsyncClient) -> None:
    r = await client.options("/health", headers={"Origin": "https://app.example.com", **PREFLIGHT})
    assert not [h for h in r.headers if h.lower().startswith("access-control-")], dict(r.headers)
    simple = await client.get("/liveness", headers={"Origin": "https://app.example.com"})
    assert not [h for h in simple.headers if h.lower().startswith("access-control-")]


# --- the access log ---


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [rec for rec in caplog.records if rec.name == "passwordless.access"]


async def test_access_log_records_each_request(
    routed: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, json_log: io.StringIO
) -> None:
    caplog.set_level(logging.INFO, logger="passwordless")
    await routed.get("/liveness", headers={"X-Request-ID": "access-1"})
    await routed.post("/liveness", headers={"X-Request-ID": "access-2"})
    await routed.get("/test/boom", headers={"X-Request-ID": "access-3"})

    seen = [(rec.__dict__["method"], rec.__dict__["path"], rec.__dict__["status"]) for rec in access_records(caplog)]
    assert seen == [("GET", "/liveness", 200), ("POST", "/liveness", 405), ("GET", "/test/boom", 500)]

    lines = [line for line in log_lines(json_log) if line["logger"] == "passwordless.access"]
    assert [(line["path"], line["status"], line["request_id"]) for line in lines] == [
        ("/liveness", 200, "access-1"),
        ("/liveness", 405, "access-2"),
        ("/test/boom", 500, "access-3"),
    ]


async def test_access_log_never_holds_the_query_string(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, json_log: io.StringIO
) -> None:
    caplog.set_level(logging.DEBUG, logger="passwordless")
    r = await client.get("/readiness?token=SECRETTOKEN&code=123456")
    assert r.status_code == 200
    await client.get("/no/such?token=SECRETTOKEN")
    assert len(access_records(caplog)) == 2
    for rec in caplog.records:
        assert "SECRETTOKEN" not in rec.getMessage()
        for key, value in rec.__dict__.items():
            assert "SECRETTOKEN" not in repr(value), (rec.name, key)
    assert "SECRETTOKEN" not in caplog.text
    assert "SECRETTOKEN" not in json_log.getvalue()
    assert "/readiness" in json_log.getvalue()


async def test_a_request_path_cannot_forge_text_log_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """With log.format = "text" every access-log record is one line, whatever the path holds."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    access = logging.getLogger("passwordless.access")
    access.addHandler(handler)
    caplog.set_level(logging.INFO, logger="passwordless")
    try:
        r = await client.get("/x%0A2030-01-01T00:00:00.000Z%20INFO%20forged")
    finally:
        access.removeHandler(handler)
    assert r.status_code == 404
    assert len(stream.getvalue().splitlines()) == 1, stream.getvalue()


# --- the development secret ---


async def test_dev_secret_is_made_once_beside_the_database(
    make_config: MakeConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The development secret is SQLite's alone: on PostgreSQL every server must share jwt.secret.
    config = make_config(f'[database]\npath = "{tmp_path / "auth.db"}"\n')
    path = tmp_path / DEV_SECRET_FILE
    assert not path.exists()
    async with running(config) as (app, client):
        assert (await client.get("/readiness")).status_code == 200
        first = deps_of(app).magic_link.code_key
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="ascii").strip() == first
    assert len(first) >= 32

    async with running(config) as (app, _):
        assert deps_of(app).magic_link.code_key == first
    assert path.read_text(encoding="ascii").strip() == first

    # the warning says where the secret is, never what it is
    assert any(rec.levelno == logging.WARNING for rec in caplog.records)
    assert first not in caplog.text
    for rec in caplog.records:
        assert all(first not in repr(value) for value in rec.__dict__.values())


async def test_configured_secret_writes_no_file(make_config: MakeConfig, tmp_path: Path) -> None:
    secret = "s" * 40
    async with running(make_config(f'[jwt]\nsecret = "{secret}"')) as (app, client):
        assert (await client.get("/readiness")).status_code == 200
        assert deps_of(app).magic_link.code_key == secret
    assert not (tmp_path / DEV_SECRET_FILE).exists()


async def test_favicon_is_an_empty_answer_not_a_404(client: httpx.AsyncClient) -> None:
    """Browsers ask every origin for /favicon.ico; a 404 would be noise in logs and consoles."""
    r = await client.get("/favicon.ico")
    assert r.status_code == 204 and r.content == b""
    assert "max-age" in r.headers["cache-control"]
