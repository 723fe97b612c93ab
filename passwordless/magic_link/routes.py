"""Sign in by email (API.md, "Sign in by email: magic link and one-time code")."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from passwordless.config.settings import UiSettings
from passwordless.magic_link import service
from passwordless.magic_link.service import MagicLinkDeps
from passwordless.platform.errors import ApiError
from passwordless.sessions.http import TOKEN_RESPONSE, set_session_cookie, token_response
from passwordless.web.client import client_of
from passwordless.web.markup import Templates
from passwordless.web.openapi import Op, obj, string
from passwordless.web.origin import check_origin
from passwordless.web.pages import message_page, page
from passwordless.web.parts import part
from passwordless.web.request import Fields, read_json

MAX_TOKEN = 256
TEMPLATES = Templates(Path(__file__).parent / "templates")


def _deps(request: Request) -> MagicLinkDeps:
    return part(request, "magic_link", MagicLinkDeps)


async def request_link(request: Request) -> Response:
    fields = Fields(await read_json(request))
    email = fields.text("email", 1024)
    redirect_to = fields.optional_text("redirect_to", 2048)
    fields.done()
    await service.request_link(_deps(request), email, redirect_to, client_of(request))
    return JSONResponse({"status": "sent"}, status_code=202)  # for every address: no account enumeration


async def confirm_page(request: Request) -> Response:
    """Shows a button that spends the link; opening the link spends nothing (mail scanners do)."""
    token = request.query_params.get("token", "")
    ui = part(request, "ui", UiSettings)
    if not token or len(token) > MAX_TOKEN or not await service.link_is_live(_deps(request), token):
        return _link_failed(request)
    body = TEMPLATES.render("confirm.html", product=ui.product_name, token=token)
    return page(ui, "Sign in", body, redirects=await service.form_targets(_deps(request)))


async def verify_link(request: Request) -> Response:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return await _verify_link_form(request)
    fields = Fields(await read_json(request))
    token = fields.text("token", MAX_TOKEN)
    fields.done()
    return token_response(request, await service.verify_link(_deps(request), token, client_of(request)))


async def _verify_link_form(request: Request) -> Response:
    check_origin(request)
    try:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
    except ValueError:  # more fields than any form of ours sends
        return _link_failed(request)
    token = (form.get("token") or [""])[0]
    if not token or len(token) > MAX_TOKEN:
        return _link_failed(request)
    d = _deps(request)
    try:
        sign_in = await service.verify_link(d, token, client_of(request))
    except ApiError as exc:
        if exc.status == 429:
            limited = message_page(part(request, "ui", UiSettings), "Too many attempts", exc.message, 429)
            limited.headers.update(exc.headers)
            return limited
        return _link_failed(request)
    response = RedirectResponse(sign_in.redirect_to or "/account", status_code=303)
    set_session_cookie(response, d.sessions, sign_in)
    response.headers["cache-control"] = "no-store"
    return response


def _link_failed(request: Request) -> Response:
    return message_page(
        part(request, "ui", UiSettings),
        "This link no longer works",
        "The sign-in link has expired or was already used. Ask for a new one.",
        401,
        ("/", "Get a new sign-in link"),
    )


async def verify_code(request: Request) -> Response:
    fields = Fields(await read_json(request))
    email = fields.text("email", 1024)
    code = fields.text("code", 16)
    fields.done()
    return token_response(request, await service.verify_code(_deps(request), email, code, client_of(request)))


routes = [
    Route("/auth/magic-link", request_link, methods=["POST"]),
    Route("/auth/magic-link/verify", confirm_page, methods=["GET"]),
    Route("/auth/magic-link/verify", verify_link, methods=["POST"]),
    Route("/auth/code/verify", verify_code, methods=["POST"]),
]

# The GET verify page and the form variant of POST verify are HTML for browsers: not listed.
_EMAIL = string(maxLength=1024)
operations = {
    ("POST", "/auth/magic-link"): Op(
        "Email a sign-in link and code (202 whether or not an account exists).",
        {202: obj({"status": string(enum=["sent"])})},
        body=obj({"email": _EMAIL, "redirect_to": string(maxLength=2048)}, required=["email"]),
        errors=(429,), tag="email",
    ),
    ("POST", "/auth/magic-link/verify"): Op(
        "Spend a link's token (JSON; the confirmation page posts a form instead).", {200: TOKEN_RESPONSE},
        body=obj({"token": string(maxLength=MAX_TOKEN)}), errors=(401, 403, 429), tag="email",
    ),
    ("POST", "/auth/code/verify"): Op(
        "Spend the emailed 6-digit code.", {200: TOKEN_RESPONSE},
        body=obj({"email": _EMAIL, "code": string(maxLength=16)}), errors=(401, 429), tag="email",
    ),
}
