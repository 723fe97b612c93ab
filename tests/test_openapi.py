"""GET /openapi.json (API.md "Errors"): a valid OpenAPI 3.1 document that lists every JSON route and
nothing else, and a schemathesis fuzz run of the real `passwordless serve` against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Mount

from passwordless.web import openapi
from tests.support.live import LiveServer, serving

pytestmark = pytest.mark.anyio

ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef"

# Routes for browsers, not integrators: HTML pages and their form posts, a stylesheet, the favicon.
# Their contract is the page a person sees (tests/test_pages_browser.py), not a JSON schema.
UNDOCUMENTED = {
    ("GET", "/"), ("POST", "/"), ("POST", "/sign-in/code"), ("GET", "/account"),
    ("POST", "/account/passkeys/{id}/rename"), ("POST", "/account/passkeys/{id}/delete"),
    ("POST", "/account/sessions/{id}/end"), ("POST", "/account/sessions/end-others"),
    ("POST", "/account/sign-out"), ("POST", "/account/apps/{id}/revoke"), ("GET", "/ui/theme.css"), ("GET", "/favicon.ico"),
    ("GET", "/auth/magic-link/verify"),  # the confirmation page the emailed link opens
    ("POST", "/oauth2/authorize/consent"),  # the consent page's Allow / Deny, a form of ours posting to itself
}


async def _document(client: httpx.AsyncClient) -> dict[str, object]:
    answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    return dict(answer.json())


async def test_the_document_is_valid_openapi_3_1(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    assert document["openapi"] == "3.1.0"
    validate(document)


async def test_every_json_route_is_documented_and_every_operation_has_a_route(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    document = await _document(client)
    paths = document["paths"]
    assert isinstance(paths, dict)
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    routes = set(openapi.route_keys(app.routes))
    assert routes - UNDOCUMENTED - documented == set(), "routes without a documented operation"
    assert documented - routes == set(), "documented operations without a route"
    assert documented & UNDOCUMENTED == set()
    assert all(isinstance(r, Mount) and r.path == "/static" for r in app.routes if not hasattr(r, "methods"))


async def test_errors_name_the_shared_shape_and_429_promises_retry_after(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    verify = document["paths"]["/auth/passkeys/login/verify"]["post"]  # type: ignore[index]
    assert verify["responses"]["429"]["headers"]["Retry-After"]
    assert verify["responses"]["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    register = document["paths"]["/auth/passkeys/register/options"]["post"]  # type: ignore[index]
    assert {"401", "403", "409", "503"} <= set(register["responses"])
    assert register["security"] == [{"bearer": []}, {"cookie": []}]


def _post(server: LiveServer, path: str, body: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(
        server.url(path), json.dumps(body).encode(), {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.loads(answer.read()))


def _access_token(server: LiveServer) -> str:
    _post(server, "/auth/magic-link", {"email": "fuzz@example.com"})
    code = server.next_email().code
    return str(_post(server, "/auth/code/verify", {"email": "fuzz@example.com", "code": code})["access_token"])


def _fuzz(server: LiveServer, token: str, *selection: str) -> None:
    """Runs `st run` against the live server; fails with its whole output."""
    st = Path(sys.executable).parent / "st"
    command = [
        str(st), "run", server.url("/openapi.json"),
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--header", f"Authorization: Bearer {token}",
        "--max-examples", "25", "--max-time", "45", "--seed", "1", "--workers", "1",
        "--generation-deterministic", "--no-color", *selection,
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    # cwd: schemathesis keeps its example cache in .schemathesis/ under the working directory.
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=server.db.parent)
    assert done.returncode == 0, done.stdout + done.stderr + server.logs()[-4000:]


def test_schemathesis_finds_nothing_against_the_real_server(tmp_path: Path) -> None:
    # Rate limits off, so that fuzzing meets the answers it is after rather than 429 (which is
    # documented where it can happen, and would pass all the same).
    extra = f'[admin]\ntoken = "{ADMIN_TOKEN}"\n[rate_limit]\nenabled = false\n'

    with serving(tmp_path, extra) as server:
        token = _access_token(server)
        # The admin API and the user's API take different bearer tokens: one run each.
        _fuzz(server, ADMIN_TOKEN, "--include-path-regex", "^/admin/")
        _fuzz(server, token, "--exclude-path-regex", "^/admin/")


async def test_docs_api_md_names_every_documented_operation(client: httpx.AsyncClient) -> None:
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    paths = (await _document(client))["paths"]
    assert isinstance(paths, dict)
    missing = [
        f"{method.upper()} {path}" for path, item in paths.items() for method in item
        if f"{method.upper()} {path}" not in text
    ]
    assert missing == [], "docs/api.md does not describe these operations"
