"""GET /openapi.json (API.md "Errors"): a valid OpenAPI 3.1 document that lists every JSON route and
the OpenID Connect provider's endpoints and nothing else, and a schemathesis fuzz run of the real
`passwordless serve` against it (the provider's with a configured client, a signed-in browser and a
real access token, so that fuzzing gets past "who are you")."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Mount

from passwordless.web import openapi
from tests.support.live import LiveServer, serving

pytestmark = pytest.mark.anyio

ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef"
CLIENT_SECRET = "fuzz-client-secret-0123456789abcdef"
REDIRECT = "https://app.example.com/callback"
CLIENT = f'''
[[oidc.clients]]
id = "fuzz"
secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT}"]
post_logout_redirect_uris = ["https://app.example.com/signed-out"]
scopes = ["openid", "email", "groups", "offline_access"]
skip_consent = true
'''
# Authorization requests from the registered client to its registered redirect URI (the rest of
# the request fuzzed): without them, nearly every request stops at "unknown client".
OPERATIONS_CONFIG = f'''
[[operations]]
include-name = "GET /oauth2/authorize"
parameters = {{ "query.client_id" = "fuzz", "query.redirect_uri" = "{REDIRECT}" }}

[[operations]]
include-name = "POST /oauth2/authorize"
parameters = {{ "body.client_id" = "fuzz", "body.redirect_uri" = "{REDIRECT}" }}
'''

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


async def test_the_provider_is_described_as_its_standards_say(client: httpx.AsyncClient) -> None:
    paths = (await _document(client))["paths"]
    token = paths["/oauth2/token"]["post"]  # type: ignore[index]
    assert list(token["requestBody"]["content"]) == ["application/x-www-form-urlencoded"]
    assert "415" not in token["responses"]  # a form endpoint: no JSON content-type check
    assert token["security"] == [{"client": []}, {}]  # client_secret_basic, or the form's fields
    invalid_client = token["responses"]["401"]
    assert invalid_client["content"]["application/json"]["schema"]["properties"]["error"] == {"type": "string"}
    assert "WWW-Authenticate" in invalid_client["headers"]
    authorize = paths["/oauth2/authorize"]["get"]  # type: ignore[index]
    assert "Location" in authorize["responses"]["302"]["headers"] and "content" not in authorize["responses"]["302"]
    assert "text/html" in authorize["responses"]["400"]["content"]  # an unknown client: a page, never a redirect
    assert paths["/oauth2/userinfo"]["get"]["security"] == [{"bearer": []}]  # type: ignore[index]
    assert "/oauth2/authorize/consent" not in paths  # type: ignore[operator]


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


def _browser_session(server: LiveServer, http: httpx.Client) -> str:
    """The hosted pages' session cookie, from an emailed link confirmed as the page does it."""
    assert http.post("/auth/magic-link", json={"email": "browser@example.com"}).status_code == 202
    token = server.next_email().token
    answer = http.post("/auth/magic-link/verify", data={"token": token}, headers={"origin": server.public_url})
    assert answer.status_code == 303, answer.text
    cookie = str(answer.cookies["pl_session"])
    http.cookies.clear()  # sent by hand where it is meant to be
    return cookie


def _oidc_access_token(http: httpx.Client, cookie: str) -> str:
    """An access token of the provider's own (not API.md's), through the authorization code flow."""
    verifier = secrets.token_urlsafe(48)
    query = {
        "response_type": "code", "client_id": "fuzz", "redirect_uri": REDIRECT, "scope": "openid email groups",
        "state": "s", "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
    }
    answer = http.get("/oauth2/authorize", params=query, headers={"cookie": f"pl_session={cookie}"})
    assert answer.status_code == 302, answer.text
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    token = http.post("/oauth2/token", data=form, auth=("fuzz", CLIENT_SECRET))
    assert token.status_code == 200, token.text
    return str(token.json()["access_token"])


def _fuzz(server: LiveServer, authorization: str, *selection: str, seconds: int = 45) -> None:
    """Runs `st run` against the live server for at most `seconds`; fails with its whole output."""
    st = Path(sys.executable).parent / "st"
    command = [
        str(st), "run", server.url("/openapi.json"),
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--header", f"Authorization: {authorization}",
        "--max-examples", "25", "--max-time", str(seconds), "--seed", "1", "--workers", "1",
        "--generation-deterministic", "--no-color", *selection,
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    # cwd: schemathesis keeps its example cache in .schemathesis/ under the working directory.
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=server.db.parent)
    assert done.returncode == 0, done.stdout + done.stderr + server.logs()[-4000:]


def test_schemathesis_finds_nothing_against_the_real_server(tmp_path: Path) -> None:
    # Rate limits off, so that fuzzing meets the answers it is after rather than 429 (which is
    # documented where it can happen, and would pass all the same).
    extra = f'[admin]\ntoken = "{ADMIN_TOKEN}"\n[rate_limit]\nenabled = false\n{CLIENT}'
    (tmp_path / "schemathesis.toml").write_text(OPERATIONS_CONFIG, encoding="utf-8")

    with serving(tmp_path, extra) as server, httpx.Client(base_url=server.public_url) as http:
        token = _access_token(server)
        cookie = _browser_session(server, http)
        access_token = _oidc_access_token(http, cookie)
        # The admin API, the user's API, the provider's client calls and its bearer calls take
        # different credentials: one run each. The browser's cookie rides along to the provider.
        _fuzz(server, f"Bearer {ADMIN_TOKEN}", "--include-path-regex", "^/admin/")
        _fuzz(server, f"Bearer {token}", "--exclude-path-regex", "^/(admin|oauth2)/")
        browser = ("--header", f"Cookie: pl_session={cookie}")
        basic = "Basic " + base64.b64encode(f"fuzz:{CLIENT_SECRET}".encode()).decode()
        client_calls, bearer_calls = "^/oauth2/(authorize|token|revoke|introspect)$", "^/oauth2/(userinfo|logout)$"
        _fuzz(server, basic, *browser, "--include-path-regex", client_calls, seconds=30)
        _fuzz(server, f"Bearer {access_token}", *browser, "--include-path-regex", bearer_calls, seconds=30)


async def test_docs_api_md_names_every_documented_operation(client: httpx.AsyncClient) -> None:
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    paths = (await _document(client))["paths"]
    assert isinstance(paths, dict)
    missing = [
        f"{method.upper()} {path}" for path, item in paths.items() for method in item
        if f"{method.upper()} {path}" not in text
    ]
    assert missing == [], "docs/api.md does not describe these operations"
