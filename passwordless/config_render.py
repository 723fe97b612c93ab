"""Write settings out as TOML: the example file (from the declaration) and the effective
configuration (for `check-config`, secrets masked).

Regenerate the example file with: python -m passwordless.config_render > config.example.toml
"""

from __future__ import annotations

from typing import Any

from passwordless.config import Config, Setting, WebhookSettings
from passwordless.config_load import settings_of, toml_value

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
    return "\n".join(lines).strip() + "\n"


def _effective_table(obj: Any, prefix: str, lines: list[str]) -> None:
    for f, name in settings_of(type(obj)):
        value = getattr(obj, f.name)
        if "setting" in f.metadata:
            meta: Setting = f.metadata["setting"]
            if meta.secret:
                lines.append(f'{name} = "{"********" if value else ""}"')
            else:
                lines.append(f"{name} = {toml_value(meta.kind.render(value))}")
        elif "section" in f.metadata:
            lines += ["", f"[{prefix}{name}]"]
            _effective_table(value, f"{prefix}{name}.", lines)


if __name__ == "__main__":
    print(render_example(), end="")
