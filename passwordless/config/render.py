"""Write settings out as TOML: the example file (from the declaration) and the effective
configuration (for `check-config`, secrets masked).

Regenerate the example file with: python -m passwordless.config.render > config.example.toml
and the reference with: python -m passwordless.config.render --markdown > docs/configuration.md
"""

from __future__ import annotations

import sys
from typing import Any

from passwordless.config.kinds import Choice, Kind, TextList
from passwordless.config.load import settings_of, toml_value
from passwordless.config.settings import Config, OidcClientSettings, Setting, WebhookSettings

EXAMPLE_HEADER = """\
# passwordless configuration.
#
# Every key is optional: the value shown is the built-in default, and a commented-out key shows
# an example for a setting that is empty or derived by default. Edit, then check with
#   passwordless check-config --config config.toml
# Precedence: command-line flag > environment variable (named after "env:") > this file > default.
# Durations: "500ms", "90s", "15m", "12h", "30d". Rates: "5/15m" (count per duration).
"""


def render_example() -> str:
    lines = [EXAMPLE_HEADER]
    _example_table(Config, "", lines)
    lines += [
        "",
        "# Webhooks: repeat the [[webhooks]] table once per receiver.",
        "# [[webhooks]]",
    ]
    for f, name in settings_of(WebhookSettings):
        meta: Setting = f.metadata["setting"]
        lines.append(f"# {name} = {toml_value(meta.kind.render(meta.example))}  # {meta.doc}")
    lines += [
        "",
        "# OpenID Connect clients (OIDC.md): repeat the [[oidc.clients]] table once per application.",
        "# [[oidc.clients]]",
    ]
    for f, name in settings_of(OidcClientSettings):
        meta = f.metadata["setting"]
        shown = meta.example if meta.example is not None else meta.kind.render(f.default)
        lines.append(f"# {name} = {toml_value(shown)}  # {meta.doc}")
    return "\n".join(lines) + "\n"


def _example_table(cls: type[Any], prefix: str, lines: list[str]) -> None:
    for f, name in settings_of(cls):
        if "setting" in f.metadata:
            meta: Setting = f.metadata["setting"]
            env = f" (env: {meta.env})" if meta.env else ""
            lines.append(f"# {meta.doc}{env}")
            if meta.example is not None:
                lines.append(f"# {name} = {toml_value(meta.kind.render(meta.kind.parse(meta.example)))}")
            else:
                lines.append(f"{name} = {toml_value(meta.kind.render(f.default))}")
        elif "section" in f.metadata:
            lines += ["", f"[{prefix}{name}]"]
            _example_table(f.metadata["section"], f"{prefix}{name}.", lines)


def render_effective(config: Config) -> str:
    """The configuration in force, as TOML; secrets show only whether they are set."""
    lines: list[str] = []
    _effective_table(config, "", lines)
    for hook in config.webhooks:
        lines += ["", "[[webhooks]]"]
        _effective_table(hook, "webhooks.", lines)
    for client in config.oidc.clients:
        lines += ["", "[[oidc.clients]]"]
        _effective_table(client, "oidc.clients.", lines)
    return "\n".join(lines).strip() + "\n"


def _effective_table(obj: Any, prefix: str, lines: list[str]) -> None:
    for f, name in settings_of(type(obj)):
        value = getattr(obj, f.name)
        if "setting" in f.metadata:
            meta: Setting = f.metadata["setting"]
            if meta.secret:
                lines.append(f'{name} = "{"********" if value else ""}"')
            else:
                lines.append(f"{name} = {toml_value(meta.kind.masked(value))}")
        elif "section" in f.metadata:
            lines += ["", f"[{prefix}{name}]"]
            _effective_table(value, f"{prefix}{name}.", lines)


REFERENCE_HEADER = """\
# Configuration reference

<!-- Generated from passwordless/config/settings.py; do not edit by hand. Regenerate with:
     python -m passwordless.config.render --markdown > docs/configuration.md -->

Every key is optional. Settings are read from, strongest first: command-line flags
(`serve --host`, `--port`), environment variables, the config file, built-in defaults. The config
file is `--config PATH`, else `$PASSWORDLESS_CONFIG`, else `./config.toml` if it exists.
`config.example.toml` holds the same keys, ready to copy; `passwordless check-config` prints the
settings in force (secrets masked).

Durations are written `"500ms"`, `"90s"`, `"15m"`, `"12h"`, `"30d"`; rates `"5/15m"` (count per
duration). A list set from an environment variable is comma-separated. *Not set* means the key is
empty by default: the description says what is used instead, and the example shows the form.
`check-config` masks a *secret*; where it has an environment variable, set it there rather than in
the file.
"""


def render_reference() -> str:
    """The configuration reference as Markdown: one table per section (key, environment
    variable, default, description), walked from the declaration like render_example."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def choices(kind: Kind[Any]) -> str:
        inner = kind.item if isinstance(kind, TextList) else kind
        if not isinstance(inner, Choice):
            return ""
        listed = ", ".join(f'`"{option}"`' for option in inner.options)
        return f" {'Each item one' if inner is not kind else 'One'} of {listed}."

    def row(key: str, meta: Setting, default: object) -> str:
        env = (f"`{meta.env}`" + (" (comma list)" if isinstance(meta.kind, TextList) else "")) if meta.env else ""
        if meta.example is None:
            shown = f"`{toml_value(meta.kind.render(default))}`"
        else:
            shown = f"*not set*; e.g. `{toml_value(meta.kind.render(meta.kind.parse(meta.example)))}`"
        doc = meta.doc + choices(meta.kind) + (" *Secret.*" if meta.secret else "")
        return f"| `{key}` | {cell(env)} | {cell(shown)} | {cell(doc)} |"

    def table(cls: type[Any], prefix: str, title: str, note: str) -> None:
        rows: list[str] = []
        nested: list[tuple[type[Any], str, bool]] = []
        for f, name in settings_of(cls):
            if "setting" in f.metadata:
                rows.append(row(prefix + name, f.metadata["setting"], f.default))
            else:
                array = "table_array" in f.metadata
                nested.append((f.metadata["table_array" if array else "section"], prefix + name, array))
        lines.extend(["", f"## {title}", "", *([note, ""] if note else [])])
        lines.extend(["| key | env var | default | description |", "| --- | --- | --- | --- |", *rows])
        for inner, key, array in nested:
            heading = f"`[[{key}]]`" if array else f"`[{key}]`"
            hint = f"Repeat the `[[{key}]]` table once for each; there are none by default." if array else ""
            table(inner, key + ".", heading, hint)

    lines = [REFERENCE_HEADER.rstrip("\n")]
    table(Config, "", "Top level", "")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_reference() if "--markdown" in sys.argv[1:] else render_example(), end="")
