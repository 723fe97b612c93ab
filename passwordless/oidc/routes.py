"""The provider's HTTP side: a small Starlette adapter for Authlib (modelled on its Flask and
Django integrations: the request is read here, handed to the synchronous server inside one
unit, and its (status, body, headers) answer turned back into a response)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from authlib.common.security import is_secure_transport
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from passwordless.config.settings import UiSettings
from passwordless.oidc import logout as logouts
from passwordless.oidc import service
from passwordless.oidc.server import Request, dumps
from passwordless.oidc.service import Consent, Denied, Invalid, NeedsSignIn, OidcDeps, Redirect
from passwordless.platform.errors import ApiError
from passwordless.sessions import service as sessions
from passwordless.sessions.http import clear_session_cookie, cookie_name, session_deps
from passwordless.sessions.service import Principal
from passwordless.web.client import client_of
from passwordless.web.markup import Html, Templates, join
from passwordless.web.origin import check_origin
from passwordless.web.pages import message_page, page
from passwordless.web.parts import part

TEMPLATES = Templates(Path(__file__).parent / "templates")
MAX_FIELDS = 32
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
SCOPE_TEXT = {
    "openid": "Your user id",
    "email": "Your email address",
    "groups": "The groups you belong to",
    "offline_access": "Staying signed in when you are away",
}


async def _deps(request: HttpRequest) -> OidcDeps:
    deps = part(request, "oidc", OidcDeps)
    # The provider is off without a client (OIDC.md): no endpoints. Asked at each request, so a
    # client made or deleted through the admin API, on any server, turns it on or off at once.
    if not await deps.db.lookup(deps.clients.provider_on):
        raise ApiError(404, "not_found", "No such route.")
    return deps


def _ui(request: HttpRequest) -> UiSettings:
    return part(request, "ui", UiSettings)


async def _adapt(request: HttpRequest, issuer: str) -> Request:
    """Authlib's view of the request: query and form fields, the headers, our public URL."""
    form: dict[str, list[str]] = {}
    if request.method == "POST":
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type == "application/x-www-form-urlencoded":
            try:
                form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=MAX_FIELDS)
            except ValueError:
                form = {}
    args = {k: v for k, v in request.query_params.multi_items()}
    datalist: dict[str, list[str]] = {k: request.query_params.getlist(k) for k in request.query_params}
    for k, v in form.items():
        datalist.setdefault(k, []).extend(v)
    # Authlib refuses plain http except on a loopback host; production requires an https
    # public_url anyway, so development on http://some-host is told to use https or localhost.
    uri = issuer + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not is_secure_transport(uri):
        raise ApiError(400, "insecure_transport", "The OpenID Connect provider needs an https public_url (or localhost).")
    return Request(request.method, uri, request.headers, args, {k: v[0] for k, v in form.items()}, datalist)


def _answer(status: int, body: object, headers: list[tuple[str, str]]) -> Response:
    merged = {**{k.lower(): v for k, v in headers}, **NO_STORE, "content-type": "application/json"}
    return Response(dumps(body), status_code=status, headers=merged)


async def _principal(request: HttpRequest) -> Principal | None:
    """The browser's passwordless session (the cookie of the hosted pages), if it is live."""
    d = session_deps(request)
    cookie = request.cookies.get(cookie_name(d))
    if not cookie:
        return None
    try:
        return await sessions.authenticate_cookie(d, cookie)
    except ApiError:
        return None


async def _session_id(request: HttpRequest) -> str | None:
    principal = await _principal(request)
    return principal.session_id if principal else None


async def discovery(request: HttpRequest) -> Response:
    deps = await _deps(request)
    return JSONResponse(service.discovery(deps.issuer), headers={"cache-control": "public, max-age=300"})


async def authorize(request: HttpRequest) -> Response:
    deps = await _deps(request)
    req = await _adapt(request, deps.issuer)
    return _outcome(request, await service.authorize(deps, req, await _session_id(request), client_of(request)))


async def consent(request: HttpRequest) -> Response:
    """The consent page's answer: the authorization request again, with Allow or Deny (a form of
    ours: the Origin check refuses it from anywhere else)."""
    check_origin(request)
    deps = await _deps(request)
    req = await _adapt(request, deps.issuer)
    decision = req.form.get("decision")
    if decision not in ("allow", "deny"):
        return message_page(_ui(request), "Something went wrong", "Choose Allow or Deny.", 400)
    outcome = await service.authorize(
        deps, req, await _session_id(request), client_of(request), decision=decision == "allow"
    )
    return _outcome(request, outcome)


def _outcome(request: HttpRequest, outcome: service.Outcome) -> Response:
    ui = _ui(request)
    if isinstance(outcome, Invalid):
        return message_page(ui, "Cannot sign in", outcome.sentence, 400)
    if isinstance(outcome, NeedsSignIn):
        query = {"redirect_to": outcome.continue_to, **({"login_hint": outcome.login_hint} if outcome.login_hint else {})}
        return RedirectResponse("/?" + urlencode(query), status_code=303, headers=NO_STORE)
    if isinstance(outcome, Denied):
        back = _back(outcome.back)
        body = TEMPLATES.render(
            "denied.html", sentence=f"Your account may not use {outcome.client.settings.name}.", back=back
        )
        return page(ui, "Access denied", body, 403, redirects=(outcome.back.redirect_uri,))
    if isinstance(outcome, Consent):
        return _consent_page(request, outcome)
    return _redirect(request, outcome)


def _fields(pairs: list[tuple[str, str]]) -> Html:
    return join(TEMPLATES.render("field.html", name=k, value=v) for k, v in pairs)


def _back(redirect: Redirect) -> Html:
    if redirect.form_post:
        return TEMPLATES.render("form_post.html", action=redirect.redirect_uri, fields=_fields(redirect.params))
    return TEMPLATES.render("back_link.html", href=redirect.location)


def _redirect(request: HttpRequest, redirect: Redirect) -> Response:
    if not redirect.form_post:
        status = 303 if request.method == "POST" else 302
        return RedirectResponse(redirect.location, status_code=status, headers=NO_STORE)
    body = TEMPLATES.render("form_post.html", action=redirect.redirect_uri, fields=_fields(redirect.params))
    return page(_ui(request), "Signing you in", body, scripts=("/static/form_post.js",), redirects=(redirect.redirect_uri,))


def _consent_page(request: HttpRequest, consent: Consent) -> Response:
    fields = consent.request
    items = join(TEMPLATES.render("item.html", text=SCOPE_TEXT.get(s, s)) for s in consent.scopes)
    body = TEMPLATES.render(
        "consent.html", client=consent.client.settings.name, email=consent.email, items=items, fields=_fields(fields)
    )
    return page(_ui(request), f"Allow {consent.client.settings.name}?", body, redirects=consent.client.settings.redirect_uris)


async def token(request: HttpRequest) -> Response:
    deps = await _deps(request)
    answer = await service.token(deps, await _adapt(request, deps.issuer), client_of(request))
    return _answer(answer.status, answer.body, answer.headers)


def _bearer(request: HttpRequest, form: dict[str, str]) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return form.get("access_token", "")


async def userinfo(request: HttpRequest) -> Response:
    deps = await _deps(request)
    req = await _adapt(request, deps.issuer)
    found = await service.userinfo(deps, _bearer(request, req.form)) if _bearer(request, req.form) else None
    if found is None:
        challenge = 'Bearer error="invalid_token"'
        body = {"error": "invalid_token", "error_description": "The access token is invalid, expired or revoked."}
        return JSONResponse(body, status_code=401, headers={"www-authenticate": challenge, **NO_STORE})
    return JSONResponse(found, headers=NO_STORE)


def _invalid_client() -> Response:
    body = {"error": "invalid_client", "error_description": "Client authentication failed."}
    return JSONResponse(body, status_code=401, headers={"www-authenticate": 'Basic realm="oauth2"', **NO_STORE})


def _no_token() -> Response:
    """RFC 7009 §2.1 and RFC 7662 §2.1: `token` is required; without it the request is invalid."""
    body = {"error": "invalid_request", "error_description": "The token parameter is missing."}
    return JSONResponse(body, status_code=400, headers=NO_STORE)


async def revoke(request: HttpRequest) -> Response:
    deps = await _deps(request)
    req = await _adapt(request, deps.issuer)
    if not req.form.get("token"):
        return _no_token()
    if not await service.revoke(deps, req, client_of(request)):
        return _invalid_client()
    return Response(status_code=200, headers=NO_STORE)


async def introspect(request: HttpRequest) -> Response:
    deps = await _deps(request)
    req = await _adapt(request, deps.issuer)
    if not req.form.get("token"):
        return _no_token()
    found = await service.introspect(deps, req, client_of(request))
    if found is None:
        return _invalid_client()
    return Response(json.dumps(found), media_type="application/json", headers=NO_STORE)


async def logout(request: HttpRequest) -> Response:
    """RP-initiated logout: GET, or POST with the same fields; our confirmation page posts back
    with confirm=yes (Origin-checked). Without a valid id_token_hint for the signed-in user, the
    person confirms first."""
    deps = await _deps(request)
    req = await _adapt(request, deps.issuer)
    data = dict(req.payload.data)
    confirmed = request.method == "POST" and data.get("confirm") == "yes"
    if confirmed:
        check_origin(request)
    plan = await logouts.plan(deps, data)
    if plan.problem:
        deps.metrics.oidc_requests.labels("logout", "invalid_request").inc()
        return message_page(_ui(request), "Cannot sign out", plan.problem, 400)
    principal = await _principal(request)
    if principal and not confirmed and plan.hint_sub != principal.user.id:
        deps.metrics.oidc_requests.labels("logout", "confirm").inc()
        return _logout_confirmation(request, plan, principal)
    if principal:
        client_id = plan.client.id if plan.client else None
        await sessions.end_browser_session(
            session_deps(request), principal.session_id, client_of(request), "oidc_logout", client_id=client_id
        )
    deps.metrics.oidc_requests.labels("logout", "success").inc()
    response = _signed_out(request, plan)
    clear_session_cookie(response, session_deps(request))
    return response


def _logout_confirmation(request: HttpRequest, plan: logouts.Logout, principal: Principal) -> Response:
    asker = plan.client.settings.name if plan.client else "An application"
    body = TEMPLATES.render("logout_confirm.html", asker=asker, email=principal.user.email, fields=_fields(plan.fields))
    # the form's 303 to the client's post_logout_redirect_uri must pass CSP form-action
    return page(_ui(request), "Sign out?", body, redirects=(plan.redirect_to,) if plan.redirect_to else ())


def _signed_out(request: HttpRequest, plan: logouts.Logout) -> Response:
    if plan.redirect_to:
        return RedirectResponse(plan.redirect_to, status_code=303 if request.method == "POST" else 302, headers=NO_STORE)
    name = plan.client.settings.name if plan.client else None
    sentence = f"You are signed out{f' of {name}' if name else ''} and of this sign-in service."
    return page(_ui(request), "You are signed out", TEMPLATES.render("signed_out.html", sentence=sentence))


routes = [
    Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", discovery, methods=["GET"]),
    Route("/oauth2/authorize", authorize, methods=["GET", "POST"]),
    Route("/oauth2/authorize/consent", consent, methods=["POST"]),
    Route("/oauth2/token", token, methods=["POST"]),
    Route("/oauth2/userinfo", userinfo, methods=["GET", "POST"]),
    Route("/oauth2/revoke", revoke, methods=["POST"]),
    Route("/oauth2/introspect", introspect, methods=["POST"]),
    Route("/oauth2/logout", logout, methods=["GET", "POST"]),
]
