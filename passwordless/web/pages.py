"""Server-rendered HTML: one shell for every page, values always escaped, no inline script or
style (the Content-Security-Policy forbids both), branding from `[ui]`."""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

from passwordless.config.settings import UiSettings
from passwordless.config.kinds import origin_of

_SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="color-scheme" content="light dark">
<title>{title} · {product}</title>
<link rel="stylesheet" href="/static/style.css">
<link rel="stylesheet" href="/ui/theme.css">
<link rel="icon" href="data:,">
{scripts}
</head>
<body>
<main class="card"{data}>
{logo}<h1>{title}</h1>
{body}
{support}
</main>
</body>
</html>
"""


def text(value: str) -> str:
    return escape(value, quote=True)


def page(
    ui: UiSettings,
    title: str,
    body_html: str,
    status: int = 200,
    scripts: tuple[str, ...] = (),
    data: dict[str, str] | None = None,
    redirects: tuple[str, ...] = (),
) -> HTMLResponse:
    """A page; `body_html` must already be escaped (build it with `text()`). A page whose form may
    end in a 303 to one of `redirects` (auth.allowed_redirects) lets its form go there."""
    logo = (
        f'<img class="logo" src="{text(ui.logo_url)}" alt="{text(ui.product_name)}">\n'
        if ui.logo_url
        else f'<p class="brand">{text(ui.product_name)}</p>\n'
    )
    support = (
        f'<p class="support">Need help? Write to <a href="mailto:{text(ui.support_email)}">'
        f"{text(ui.support_email)}</a>.</p>"
        if ui.support_email
        else ""
    )
    html = _SHELL.format(
        title=text(title),
        product=text(ui.product_name),
        scripts="\n".join(f'<script src="{text(s)}" defer></script>' for s in scripts),
        data="".join(f' data-{k}="{text(v)}"' for k, v in (data or {}).items()),
        logo=logo,
        body=body_html,
        support=support,
    )
    headers = {"cache-control": "no-store", "content-security-policy": csp(ui, redirects)}
    return HTMLResponse(html, status_code=status, headers=headers)


def csp(ui: UiSettings, redirects: tuple[str, ...] = ()) -> str:
    images = "'self' data:"
    if ui.logo_url and urlsplit(ui.logo_url).hostname:
        images += " " + origin_of(ui.logo_url)
    # Chromium applies form-action to the redirects a submitted form follows: the 303 to an
    # allowed app on another origin is blocked unless that origin is listed.
    forms = " ".join(["'self'", *dict.fromkeys(origin_of(r) for r in redirects if urlsplit(r).hostname)])
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; connect-src 'self'; "
        f"object-src 'none'; base-uri 'none'; form-action {forms}; frame-ancestors 'none'"
    )


def message_page(
    ui: UiSettings, title: str, sentence: str, status: int, link: tuple[str, str] | None = None
) -> HTMLResponse:
    body = f'<p class="error" role="alert">{text(sentence)}</p>'
    if link:
        body += f'<p><a href="{text(link[0])}">{text(link[1])}</a></p>'
    return page(ui, title, body, status)


def alert(sentence: str | None) -> str:
    """The error line of a form: always present, so screen readers announce a change."""
    return f'<p class="error" role="alert" aria-live="assertive">{text(sentence or "")}</p>'
