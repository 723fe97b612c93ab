"""The hosted account page: the signed-in user's email, passkeys and sessions. Every change is a
plain form post (checked against our Origin); account.js adds "Add a passkey"."""

from __future__ import annotations

from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from passwordless.platform.errors import ApiError
from passwordless.users.rules import browser_name
from passwordless.web.pages import page, text
from passwordless.pages.signin import form_fields
from passwordless.passkeys import service as passkeys
from passwordless.sessions import service as sessions
from passwordless.sessions.service import Principal
from passwordless.pages.parts import passkeys_of, ui_of
from passwordless.sessions.http import session_deps, authenticate, clear_session_cookie
from passwordless.web.client import client_of


def _when(moment: int | None) -> str:
    if moment is None:
        return "never"
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%d %b %Y, %H:%M UTC")


async def _principal(request: Request) -> Principal | None:
    try:
        return await authenticate(request)
    except ApiError:
        return None


def _to_sign_in() -> Response:
    return RedirectResponse("/", status_code=303)


def _back(notice: str) -> Response:
    return RedirectResponse(f"/account?done={notice}", status_code=303)


def _confirm_area(has_passkeys: bool) -> str:
    """Adding a passkey needs a recent sign-in (auth.reauth_window): account.js shows this when
    the API answers reauthentication_required, signs the person in again from here (by a
    passkey they hold, or an emailed code), then adds the passkey."""
    by_passkey = "" if has_passkeys else " hidden"
    return f"""<div id="confirm-area" class="stack" hidden>
<p>To add a passkey, first confirm it is you: your last sign-in was a while ago.</p>
<button type="button" id="confirm-passkey" class="secondary"{by_passkey}>Confirm with a passkey</button>
<button type="button" id="confirm-email" class="secondary">Email me a code</button>
<form id="confirm-code-form" class="stack" hidden novalidate>
<label for="confirm-code">Code from the email</label>
<input id="confirm-code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
 pattern="[0-9]{{6}}" maxlength="6" required>
<button type="submit">Confirm and add the passkey</button>
</form>
</div>"""


NOTICES = {
    "added": "Your passkey was added. Next time, sign in with it.",
    "renamed": "The passkey was renamed.",
    "removed": "The passkey was removed.",
    "ended": "That session was ended.",
    "ended-others": "Every other session was ended.",
}


async def account_page(request: Request) -> Response:
    principal = await _principal(request)
    if principal is None:
        return _to_sign_in()
    keys = await passkeys.list_passkeys(passkeys_of(request), principal)
    active = await sessions.list_sessions(session_deps(request), principal)
    notice = NOTICES.get(request.query_params.get("done", ""))
    offer = "" if keys else (
        '<p class="notice">Add a passkey to sign in next time with your fingerprint, face or screen lock '
        "instead of waiting for an email.</p>"
    )
    key_items = "".join(
        f"""<li class="item"><div><strong>{text(k.name)}</strong><br><small>Added {_when(k.created_at)} ·
last used {_when(k.last_used_at)}</small></div>
<form method="post" action="/account/passkeys/{text(k.id)}/rename" class="inline">
<label for="name-{text(k.id)}" class="visually-hidden">New name for {text(k.name)}</label>
<input id="name-{text(k.id)}" name="name" value="{text(k.name)}" maxlength="64" required>
<button type="submit" class="secondary">Rename<span class="visually-hidden"> {text(k.name)}</span></button></form>
<form method="post" action="/account/passkeys/{text(k.id)}/delete" class="inline">
<button type="submit" class="danger">Remove<span class="visually-hidden"> {text(k.name)}</span></button></form></li>"""
        for k in keys
    )
    session_items = "".join(
        f"""<li class="item"><div><strong>{text(browser_name(s.user_agent or ""))}</strong>
{'<span class="tag">This browser</span>' if s.id == principal.session_id else ""}<br>
<small>{text(s.ip or "unknown address")} · signed in {_when(s.created_at)}</small></div>
{"" if s.id == principal.session_id else f'''<form method="post" action="/account/sessions/{text(s.id)}/end" class="inline">
<button type="submit" class="secondary">End<span class="visually-hidden"> the session of
{text(browser_name(s.user_agent or ""))}, signed in {_when(s.created_at)}</span></button></form>'''}</li>"""
        for s in active
    )
    body = f"""<p>Signed in as <strong>{text(principal.user.email)}</strong>.</p>
{f'<p class="notice" role="status">{text(notice)}</p>' if notice else ""}
<h2>Passkeys</h2>
{offer}<ul class="list">{key_items or "<li>No passkeys yet.</li>"}</ul>
<div id="add-area" hidden><button type="button" id="add-passkey">Add a passkey</button></div>
<p id="status" role="status" aria-live="polite"></p>
{_confirm_area(has_passkeys=bool(keys))}
<h2>Sessions</h2>
<ul class="list">{session_items}</ul>
<form method="post" action="/account/sessions/end-others"><button type="submit" class="secondary">End all other
sessions</button></form>
<h2>Sign out</h2>
<form method="post" action="/account/sign-out"><button type="submit">Sign out</button></form>"""
    scripts = ("/static/passkeys.js", "/static/account.js")
    return page(ui_of(request), "Your account", body, scripts=scripts, data={"email": principal.user.email})


async def rename_passkey(request: Request) -> Response:
    fields = await form_fields(request)
    principal = await _principal(request)
    if principal is None:
        return _to_sign_in()
    try:
        await passkeys.rename(passkeys_of(request), principal, request.path_params["id"], fields.get("name", ""))
    except ApiError:
        return _back("")
    return _back("renamed")


async def remove_passkey(request: Request) -> Response:
    await form_fields(request)
    principal = await _principal(request)
    if principal is None:
        return _to_sign_in()
    try:
        await passkeys.delete(passkeys_of(request), principal, request.path_params["id"], client_of(request))
    except ApiError:
        return _back("")
    return _back("removed")


async def end_session(request: Request) -> Response:
    await form_fields(request)
    principal = await _principal(request)
    if principal is None:
        return _to_sign_in()
    try:
        await sessions.end_session(session_deps(request), principal, request.path_params["id"], client_of(request))
    except ApiError:
        return _back("")
    return _back("ended")


async def end_other_sessions(request: Request) -> Response:
    await form_fields(request)
    principal = await _principal(request)
    if principal is None:
        return _to_sign_in()
    await sessions.end_other_sessions(session_deps(request), principal, client_of(request))
    return _back("ended-others")


async def sign_out(request: Request) -> Response:
    await form_fields(request)
    principal = await _principal(request)
    response = _to_sign_in()
    if principal is not None:
        await sessions.logout(session_deps(request), principal, client_of(request))
    clear_session_cookie(response, session_deps(request))
    return response
