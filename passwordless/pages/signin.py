"""The hosted sign-in page: email → link and code, or a passkey. Works without JavaScript for
the email path; signin.js adds the passkey button and passkey autofill."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from passwordless.platform.errors import ApiError
from passwordless.magic_link import service as magic_link
from passwordless.magic_link.rules import check_redirect
from passwordless.web.pages import alert, page, text
from passwordless.sessions.service import SignIn
from passwordless.pages.parts import magic_link_of, ui_of
from passwordless.sessions.http import session_deps, set_session_cookie
from passwordless.web.client import client_of
from passwordless.web.origin import check_origin

MAX_FIELD = 2048


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
    return _email_page(request, "", redirect_to, error, 200)


def _email_page(request: Request, email: str, redirect_to: str | None, error: str | None, status: int) -> Response:
    ui = ui_of(request)
    body = f"""<p>Sign in to {text(ui.product_name)} with your email or a passkey. No password needed.</p>
<form method="post" action="/" class="stack" novalidate>
<input type="hidden" name="redirect_to" value="{text(redirect_to or "")}">
<label for="email">Email address</label>
<input id="email" name="email" type="email" value="{text(email)}" autocomplete="username webauthn"
 inputmode="email" required autofocus aria-describedby="email-error">
<div id="email-error">{alert(error)}</div>
<button type="submit">Email me a sign-in link</button>
</form>
<div class="passkey" id="passkey-area" hidden>
<p class="divider"><span>or</span></p>
<button type="button" id="passkey-button" class="secondary">Sign in with a passkey</button>
</div>
<p id="status" role="status" aria-live="polite"></p>"""
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
    return _code_page(request, email.lower(), redirect_to, None, 200)


def _code_page(request: Request, email: str, redirect_to: str | None, error: str | None, status: int) -> Response:
    ui = ui_of(request)
    body = f"""<p>We sent a sign-in link and a 6-digit code to <strong>{text(email)}</strong>.
Open the link, or type the code here. Both work for {_lifetime(magic_link_of(request).auth.magic_link_ttl)}.</p>
<form method="post" action="/sign-in/code" class="stack" novalidate>
<input type="hidden" name="email" value="{text(email)}">
<input type="hidden" name="redirect_to" value="{text(redirect_to or "")}">
<label for="code">Code from the email</label>
<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{{6}}"
 maxlength="6" required autofocus aria-describedby="code-error">
<div id="code-error">{alert(error)}</div>
<button type="submit">Sign in</button>
</form>
<p><a href="/">Use a different email</a></p>"""
    return page(ui, "Check your email", body, status, redirects=magic_link_of(request).auth.allowed_redirects)


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
        response = _code_page(request, email, redirect_to, sentence, exc.status)
        response.headers.update(exc.headers)
        return response
    return signed_in(request, sign_in)
