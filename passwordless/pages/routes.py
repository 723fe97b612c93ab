"""Hosted pages (API.md, "Hosted pages"): sign in at /, the account at /account."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from passwordless.pages import account, signin
from passwordless.pages.parts import ui_of


async def theme(request: Request) -> Response:
    """The branding colour, as a stylesheet (the CSP allows no inline style)."""
    accent = ui_of(request).accent_color
    css = (
        f":root {{ --accent: {accent}; --accent-text: {accent}; }}\n"
        "@media (prefers-color-scheme: dark) {\n"
        f"  :root {{ --accent-text: color-mix(in srgb, {accent} 55%, white); }}\n}}\n"
    )
    return Response(css, media_type="text/css", headers={"cache-control": "public, max-age=300"})


async def favicon(request: Request) -> Response:
    """No icon, said once and cached: browsers ask on every origin, also for /health's JSON."""
    return Response(status_code=204, headers={"cache-control": "public, max-age=86400"})


routes = [
    Route("/", signin.sign_in_page, methods=["GET"]),
    Route("/", signin.send_link, methods=["POST"]),
    Route("/sign-in/code", signin.verify_code, methods=["POST"]),
    Route("/account", account.account_page, methods=["GET"]),
    Route("/account/passkeys/{id}/rename", account.rename_passkey, methods=["POST"]),
    Route("/account/passkeys/{id}/delete", account.remove_passkey, methods=["POST"]),
    Route("/account/sessions/{id}/end", account.end_session, methods=["POST"]),
    Route("/account/sessions/end-others", account.end_other_sessions, methods=["POST"]),
    Route("/account/apps/{id}/revoke", account.revoke_app, methods=["POST"]),
    Route("/account/sign-out", account.sign_out, methods=["POST"]),
    Route("/ui/theme.css", theme, methods=["GET"]),
    Route("/favicon.ico", favicon, methods=["GET"]),
]
