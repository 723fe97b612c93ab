"""Server-rendered HTML: one shell for every page (web/templates/), values always escaped by the
renderer (web/markup.py), no inline script or style (the Content-Security-Policy forbids both),
branding from `[ui]`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

from passwordless.config.kinds import origin_of
from passwordless.config.settings import UiSettings
from passwordless.web.markup import Html, Templates, join

TEMPLATES = Templates(Path(__file__).parent / "templates")


def page(
    ui: UiSettings,
    title: str,
    body: Html,
    status: int = 200,
    scripts: tuple[str, ...] = (),
    data: dict[str, str] | None = None,
    redirects: tuple[str, ...] = (),
) -> HTMLResponse:
    """A page around `body`, rendered markup. A page whose form may end in a 303 to one of
    `redirects` (auth.allowed_redirects) lets its form go there."""
    if ui.logo_url:
        logo = TEMPLATES.render("logo.html", url=ui.logo_url, product=ui.product_name)
    else:
        logo = TEMPLATES.render("brand.html", product=ui.product_name)
    html = TEMPLATES.render(
        "shell.html",
        title=title,
        product=ui.product_name,
        scripts=join((TEMPLATES.render("script.html", src=src) for src in scripts), "\n"),
        data=join(TEMPLATES.render("data_attribute.html", name=k, value=v) for k, v in (data or {}).items()),
        logo=logo,
        body=body,
        support=TEMPLATES.render("support.html", email=ui.support_email) if ui.support_email else "",
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
    more = TEMPLATES.render("message_link.html", href=link[0], label=link[1]) if link else ""
    return page(ui, title, TEMPLATES.render("message.html", sentence=sentence, link=more), status)


def alert(sentence: str | None) -> Html:
    """The error line of a form: always present, so screen readers announce a change."""
    return TEMPLATES.render("alert.html", sentence=sentence or "")
