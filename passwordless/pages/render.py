"""Server-rendered HTML: one shell for every page, values always escaped, no inline script."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

_SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<main class="card">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""


def page(title: str, body_html: str, status: int = 200) -> HTMLResponse:
    """A page; `body_html` must already be escaped (use `text()`)."""
    html = _SHELL.format(title=escape(title), body=body_html)
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def text(value: str) -> str:
    return escape(value)


def message_page(title: str, sentence: str, status: int, link: tuple[str, str] | None = None) -> HTMLResponse:
    body = f'<p role="alert">{text(sentence)}</p>'
    if link:
        body += f'<p><a href="{text(link[0])}">{text(link[1])}</a></p>'
    return page(title, body, status)
