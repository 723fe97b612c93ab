"""The hosted sign-in page: email → link and code, or a passkey. Works without JavaScript for
the email path; signin.js adds the passkey button and passkey autofill."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from passwordless.magic_link import service as magic_link
from passwordless.magic_link.rules import check_redirect
from passwordless.pages.parts import magic_link_of, ui_of
from passwordless.platform.errors import ApiError
from passwordless.sessions.http import session_deps, set_session_cookie
from passwordless.sessions.service import SignIn
from passwordless.web.client import client_of
from passwordless.web.markup import Templates
from passwordless.web.origin import check_origin
from passwordless.web.pages import alert, page

MAX_FIELD = 2048
TEMPLATES = Templates(Path(__file__).parent / "templates")


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a posted form (first value of each); a foreign Origin is refused."""
    check_origin(request)
    try:
        parsed = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=16)
    except ValueError:
        parsed = {}
    return {k: v[0][:MAX_FIELD] for k, v in parsed.items() if v}


def valid_redirect(request: Request, redirect_to: str | None) -> str | None:
    try:
        check_redirect(redirect_to or None, magic_link_of(request).auth.allowed_redirects)
    except ApiError:
        return None
    return redirect_to or None


def signed_in(request: Request, sign_in: SignIn) -> Response:
    response = RedirectResponse(sign_in.redirect_to or "/account", status_code=303)
    set_session_cookie(response, session_deps(request), sign_in)
    return response


async def sign_in_page(request: Request) -> Response:
    asked = request.query_params.get("redirect_to")
    redirect_to = valid_redirect(request, asked)
    error = "That return address is not allowed, so you will go to your account after signing in." if (
        asked and not redirect_to
    ) else None
    # An OpenID Connect client may name who is signing in (login_hint): it fills the field.
    hint = request.query_params.get("login_hint", "")[:MAX_FIELD]
    return _email_page(request, hint, redirect_to, error, 200)


def _email_page(request: Request, email: str, redirect_to: str | None, error: str | None, status: int) -> Response:
    ui = ui_of(request)
    body = TEMPLATES.render(
        "sign_in.html", product=ui.product_name, redirect_to=redirect_to or "", email=email, alert=alert(error)
    )
    data = {"redirect": redirect_to or "/account"}
    return page(ui, "Sign in", body, status, scripts=("/static/passkeys.js", "/static/signin.js"), data=data)


async def send_link(request: Request) -> Response:
    fields = await form_fields(request)
    email = fields.get("email", "").strip()
    redirect_to = valid_redirect(request, fields.get("redirect_to"))
    try:
        await magic_link.request_link(magic_link_of(request), email, redirect_to, client_of(request))
    except ApiError as exc:
        sentence = {
            "invalid_email": "Enter your email address, like name@example.com.",
            "rate_limited": exc.message,
        }.get(exc.code, "Something went wrong. Try again.")
        response = _email_page(request, email, redirect_to, sentence, exc.status)
        response.headers.update(exc.headers)
        return response
    return await _code_page(request, email.lower(), redirect_to, None, 200)


async def _code_page(request: Request, email: str, redirect_to: str | None, error: str | None, status: int) -> Response:
    ui = ui_of(request)
    lifetime = _lifetime(magic_link_of(request).auth.magic_link_ttl)
    body = TEMPLATES.render(
        "code.html", email=email, lifetime=lifetime, redirect_to=redirect_to or "", alert=alert(error)
    )
    redirects = await magic_link.form_targets(magic_link_of(request))
    return page(ui, "Check your email", body, status, redirects=redirects)


def _lifetime(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} seconds"
    return f"{int(seconds // 60)} minutes"


async def verify_code(request: Request) -> Response:
    fields = await form_fields(request)
    email = fields.get("email", "")
    redirect_to = valid_redirect(request, fields.get("redirect_to"))
    code = "".join(fields.get("code", "").split())
    try:
        sign_in = await magic_link.verify_code(magic_link_of(request), email, code, client_of(request))
    except ApiError as exc:
        sentence = {
            "invalid_code": "That code is wrong or has expired. Check the newest email, or ask for a new code.",
            "invalid_request": "The code is the 6 digits from the email.",
            "invalid_email": "Start again with your email address.",
            "rate_limited": exc.message,
        }.get(exc.code, "Something went wrong. Try again.")
        response = await _code_page(request, email, redirect_to, sentence, exc.status)
        response.headers.update(exc.headers)
        return response
    return signed_in(request, sign_in)
