"""Email templates: a subject, a text body and an HTML body per message kind. Built-in ones
ship with the package; files of the same name in `email.templates_dir` replace them. Values
are $placeholders, HTML-escaped in the HTML body.

A kind's HTML is the inside of <body>; the shared layout.html (replaceable the same way)
makes it a complete document: doctype, <head> with the charset and the subject as <title>,
and the page style. A kind's HTML that is already a whole document (it holds "<html") is
sent as it is."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template

BUILT_IN = Path(__file__).parent / "templates"
KINDS = {
    "magic_link": ("site", "link", "code", "expires_at", "expires_minutes", "ip", "browser", "email"),
    "passkey_added": ("site", "name", "time", "link", "email"),
}
PARTS = ("subject.txt", "txt", "html")
LAYOUT_NAMES = ("subject", "content")  # of layout.html, which every kind's HTML body goes into


class TemplateError(Exception):
    """A template is missing, unreadable or names a value that does not exist."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class _Compiled:
    """A checked template split once into text and placeholder names: filling it is a join,
    not a regular-expression pass per email."""

    def __init__(self, template: Template) -> None:
        self.parts: list[tuple[str, bool]] = []  # (text, is a placeholder name)
        end = 0
        for match in template.pattern.finditer(template.template):
            self.parts.append((template.template[end : match.start()], False))
            if match.group("escaped") is not None:
                self.parts.append(("$", False))
            else:
                self.parts.append((match.group("named") or match.group("braced"), True))
            end = match.end()
        self.parts.append((template.template[end:], False))

    def fill(self, values: Mapping[str, str]) -> str:
        return "".join(values[text] if is_name else text for text, is_name in self.parts)


class Templates:
    def __init__(self, override_dir: str = "") -> None:
        self._templates: dict[tuple[str, str], _Compiled] = {}
        self._whole: set[str] = set()  # kinds whose HTML is a whole document, not a body
        for kind, names in KINDS.items():
            for part in PARTS:
                template = Template(_read(kind, part, override_dir))
                self._check(template, kind, part, names)
                self._templates[(kind, part)] = _Compiled(template)
                if part == "html" and "<html" in template.template.lower():
                    self._whole.add(kind)
        layout = Template(_read("layout", "html", override_dir))
        self._check(layout, "layout", "html", LAYOUT_NAMES)
        self._layout = _Compiled(layout)

    @staticmethod
    def _check(template: Template, kind: str, part: str, names: tuple[str, ...]) -> None:
        try:
            template.substitute({name: "x" for name in names})
        except (KeyError, ValueError) as exc:
            raise TemplateError(f"email template {kind}.{part} does not render: bad placeholder {exc}") from None

    def render(self, kind: str, values: Mapping[str, str]) -> Rendered:
        escaped = {k: html.escape(v) for k, v in values.items()}
        subject = " ".join(self._templates[(kind, "subject.txt")].fill(values).split())  # never a header line break
        body = self._templates[(kind, "html")].fill(escaped)
        if kind not in self._whole:
            body = self._layout.fill({"subject": html.escape(subject), "content": body})
        return Rendered(subject=subject, text=self._templates[(kind, "txt")].fill(values), html=body)


def _read(kind: str, part: str, override_dir: str) -> str:
    name = f"{kind}.{part}"
    path = Path(override_dir) / name if override_dir and (Path(override_dir) / name).is_file() else BUILT_IN / name
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"email template {path} cannot be read: {exc}") from None
