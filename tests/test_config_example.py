"""config.example.toml and the code in step both ways: every declared key is documented in the
example file, and every key the file documents is accepted by the loader."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from functools import reduce
from pathlib import Path
from typing import Any, NamedTuple

from passwordless.config.load import load_config, settings_of
from passwordless.config.render import render_example
from passwordless.config.settings import Config, Setting

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
REGENERATE = "python -m passwordless.config.render > config.example.toml"

# `# [[webhooks]]` and `# key = value` lines: commented-out examples, not prose.
COMMENTED_OUT = re.compile(r"^# (\[\[[\w.]+\]\]|\w+ = .*)$", re.MULTILINE)
SECTION = re.compile(r"^(?:# )?\[\[?([\w.]+)\]\]?$")
KEY = re.compile(r"^(?:# )?(\w+) = ")


class Declared(NamedTuple):
    key: str  # dotted TOML key: "email.from", "webhooks.url"
    attr: str  # dotted attribute path: "email.from_address", "webhooks.url"
    meta: Setting
    default: object


def declared_settings(cls: type[Any] = Config, key: str = "", attr: str = "") -> Iterator[Declared]:
    """Every setting declared in config.py, walking sections and the [[webhooks]] table."""
    for f, name in settings_of(cls):
        if "setting" in f.metadata:
            yield Declared(key + name, attr + f.name, f.metadata["setting"], f.default)
        else:
            inner = f.metadata.get("section") or f.metadata["table_array"]
            yield from declared_settings(inner, f"{key}{name}.", f"{attr}{f.name}.")


def config_value(config: Config, attr: str) -> object:
    """The value at a dotted attribute path; webhooks.* reads the first webhook."""
    if attr.startswith("webhooks."):
        return getattr(config.webhooks[0], attr.removeprefix("webhooks."))
    if attr.startswith("oidc.clients."):
        return getattr(config.oidc.clients[0], attr.removeprefix("oidc.clients."))
    return reduce(getattr, attr.split("."), config)


def toml_value_at(data: dict[str, Any], key: str) -> object:
    """The value at a dotted key of parsed TOML (the first [[webhooks]] table); KeyError if absent."""
    node: Any = data
    for part in key.split("."):
        node = (node[0] if isinstance(node, list) else node)[part]
    return node


def documented_keys(text: str) -> set[str]:
    """The dotted keys an example file shows, commented out or not."""
    keys, section = set(), ""
    for line in text.splitlines():
        if header := SECTION.match(line):
            section = header[1] + "."
        elif key := KEY.match(line):
            keys.add(section + key[1])
    return keys


def example_text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


def test_example_file_is_exactly_what_the_code_renders() -> None:
    assert example_text() == render_example(), (
        f"config.example.toml is out of date with passwordless/config/settings.py; regenerate it with: {REGENERATE}"
    )


def test_every_declared_key_is_in_the_example_file() -> None:
    declared = {d.key for d in declared_settings()}
    assert {"email.from", "email.smtp.host", "webhooks.url", "webhooks.secret", "webhooks.events"} <= declared
    missing = declared - documented_keys(example_text())
    assert not missing, f"keys missing from config.example.toml: {sorted(missing)}; regenerate: {REGENERATE}"


def test_every_key_in_the_example_file_is_declared() -> None:
    unknown = documented_keys(example_text()) - {d.key for d in declared_settings()}
    assert not unknown, f"config.example.toml documents keys the code does not declare: {sorted(unknown)}"


def test_example_file_loads_as_is_and_its_values_are_the_defaults() -> None:
    shown = tomllib.loads(example_text())
    not_default = {}
    for d in declared_settings():
        try:
            value = toml_value_at(shown, d.key)
        except KeyError:
            continue  # commented out: an example, not the default
        if d.meta.kind.parse(value) != d.default:
            not_default[d.key] = value
    assert not not_default, f"config.example.toml shows values that are not the defaults: {not_default}"
    assert load_config(EXAMPLE, {}) == load_config(None, {})


def test_example_file_loads_with_every_commented_out_key_uncommented(tmp_path: Path) -> None:
    uncommented = COMMENTED_OUT.sub(r"\1", example_text())
    assert not COMMENTED_OUT.search(uncommented)
    assert "\n[[webhooks]]\n" in uncommented
    path = tmp_path / "config.toml"
    path.write_text(uncommented, encoding="utf-8")

    config = load_config(path, {})

    assert len(config.webhooks) == 1
    assert len(config.oidc.clients) == 1
    examples = [d for d in declared_settings() if d.meta.example is not None]
    assert examples
    not_taken = {
        d.key: value
        for d in examples
        if (value := config_value(config, d.attr)) != d.meta.kind.parse(d.meta.example)
    }
    assert not not_taken, f"uncommented example values did not take effect: {not_taken}"
