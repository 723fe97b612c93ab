"""The hosted account page: the signed-in user's email, passkeys and sessions. Every change is a
plain form post (checked against our Origin); account.js adds "Add a passkey"."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from passwordless.clients.service import list_clients
from passwordless.pages.parts import clients_of, passkeys_of, ui_of
from passwordless.pages.signin import form_fields
from passwordless.passkeys import service as passkeys
from passwordless.passkeys.service import Passkey
from passwordless.platform.errors import ApiError
from passwordless.sessions import service as sessions
from passwordless.sessions.http import authenticate, clear_session_cookie, session_deps
from passwordless.sessions.service import Principal
from passwordless.sessions.store import Session
from passwordless.users.rules import browser_name
from passwordless.users.store import Consent
from passwordless.web.client import client_of
from passwordless.web.markup import Html, Templates, join
from passwordless.web.pages import page

TEMPLATES = Templates(Path(__file__).parent / "templates")


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


def _confirm_area(has_passkeys: bool) -> Html:
    """Adding a passkey needs a recent sign-in (auth.reauth_window): account.js shows this when
    the API answers reauthentication_required, signs the person in again from here (by a
    passkey they hold, or an emailed code), then adds the passkey."""
    return TEMPLATES.render("confirm_area.html", by_passkey="" if has_passkeys else " hidden")


def _passkey_item(key: Passkey) -> Html:
    added, used = _when(key.created_at), _when(key.last_used_at)
    return TEMPLATES.render("passkey_item.html", id=key.id, name=key.name, added=added, used=used)


def _session_item(session: Session, current_id: str) -> Html:
    browser, signed_in = browser_name(session.user_agent or ""), _when(session.created_at)
    current = session.id == current_id
    end = TEMPLATES.render("session_end.html", id=session.id, browser=browser, signed_in=signed_in)
    return TEMPLATES.render(
        "session_item.html",
        browser=browser,
        this_browser=TEMPLATES.render("this_browser.html") if current else "",
        ip=session.ip or "unknown address",
        signed_in=signed_in,
        end="" if current else end,
    )


def _app_item(consent: Consent, names: dict[str, str]) -> Html:
    name = names.get(consent.client_id, consent.client_id)
    return TEMPLATES.render("app_item.html", id=consent.client_id, name=name, scope=consent.scope,
                            allowed=_when(consent.created_at))


def _apps_section(apps: list[Consent], names: dict[str, str]) -> Html:
    """Only where the OpenID Connect provider is on (or the user has allowed an app)."""
    items = join(_app_item(a, names) for a in apps) if apps else TEMPLATES.render("no_apps.html")
    return TEMPLATES.render("apps.html", items=items)


async def _client_names(request: Request) -> dict[str, str]:
    """Every OIDC client's name by id (the config file's and the admin API's); none: the provider is off."""
    deps = clients_of(request)
    return {e.settings.id: e.settings.name or e.settings.id for e in await list_clients(deps)}


NOTICES = {
    "app-revoked": "The app's access was revoked; it will ask again next time.",
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
    apps = await sessions.list_apps(session_deps(request), principal)
    names = await _client_names(request)
    notice = NOTICES.get(request.query_params.get("done", ""))
    body = TEMPLATES.render(
        "account.html",
        email=principal.user.email,
        notice=TEMPLATES.render("notice.html", notice=notice) if notice else "",
        offer="" if keys else TEMPLATES.render("passkey_offer.html"),
        passkeys=join(map(_passkey_item, keys)) if keys else TEMPLATES.render("no_passkeys.html"),
        confirm_area=_confirm_area(has_passkeys=bool(keys)),
        sessions=join(_session_item(s, principal.session_id) for s in active),
        apps=_apps_section(apps, names) if apps or names else "",
    )
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


async def revoke_app(request: Request) -> Response:
    await form_fields(request)
    principal = await _principal(request)
    if principal is None:
        return _to_sign_in()
    done = await sessions.revoke_app(session_deps(request), principal, request.path_params["id"], client_of(request))
    return _back("app-revoked" if done else "")


async def sign_out(request: Request) -> Response:
    await form_fields(request)
    principal = await _principal(request)
    response = _to_sign_in()
    if principal is not None:
        await sessions.logout(session_deps(request), principal, client_of(request))
    clear_session_cookie(response, session_deps(request))
    return response
