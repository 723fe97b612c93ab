"""The hosted pages' escaping renderer. Markup lives in template files with ${name}
placeholders (string.Template), never in Python: a fragment such as `<p>${sentence}</p>` is
a file, and every value filled into it is HTML-escaped unless it is `Html`, markup this
renderer made. So fragments nest (render an item per list entry, join them, pass the result
on) and an escape cannot be forgotten. A value a template names but the caller leaves out
raises KeyError."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from pathlib import Path
from string import Template


class Html(str):
    """Markup made by `Templates.render` or `join`: filled into a template as it is."""

    __slots__ = ()


def _escaped(value: str) -> str:
    return value if isinstance(value, Html) else escape(value, quote=True)


def join(fragments: Iterable[Html], separator: str = "") -> Html:
    """Rendered fragments side by side (the items of a list); the separator is escaped."""
    return Html(_escaped(separator).join(fragments))


class Templates:
    """The templates of one package folder, each file read once, on first use. A file's last
    newline is dropped so that a fragment joins exactly where its caller places it."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._read: dict[str, Template] = {}

    def render(self, file_name: str, /, **values: str) -> Html:
        """`file_name` is positional only, so a template may name any value, `name` included."""
        escaped = {key: _escaped(value) for key, value in values.items()}
        return Html(self._template(file_name).substitute(escaped))

    def _template(self, name: str) -> Template:
        template = self._read.get(name)
        if template is None:
            text = (self._folder / name).read_text(encoding="utf-8").removesuffix("\n")
            template = self._read[name] = Template(text)
        return template
