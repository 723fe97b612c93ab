"""Load the configuration: defaults → config.toml → environment → command-line flags, then
derive the defaults that depend on other keys, validate, and refuse what production must not run."""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import Field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from passwordless.config.clients import client_problems, client_secret_env
from passwordless.config.kinds import origin_of
from passwordless.config.settings import Config, OidcClientSettings, Setting

CONFIG_ENV = "PASSWORDLESS_CONFIG"


class ConfigError(Exception):
    """A configuration problem, said in one line; start-up stops with exit code 2."""


def find_config_file(flag: str | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """`--config`, else $PASSWORDLESS_CONFIG, else ./config.toml if it exists, else none."""
    chosen = flag or env.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"config error: config file {chosen} does not exist")
        return path
    local = cwd / "config.toml"
    return local if local.is_file() else None


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    data = _read_toml(path) if path else {}
    where = f"in {path}" if path else ""
    raw = _build(Config, data, "", _Sources(env or {}, overrides or {}, where))
    config = _derive(raw)
    _validate(config)
    if config.production:
        _refuse_insecure(config)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error: {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config error: cannot read {path}: {exc}") from None


class _Sources:
    def __init__(self, env: Mapping[str, str], overrides: Mapping[str, object], where: str) -> None:
        self.env, self.overrides, self.where = env, overrides, where


def settings_of(cls: type[Any]) -> Iterator[tuple[Field[Any], str]]:
    """The fields of a settings class with their TOML key names."""
    for f in fields(cls):
        meta = f.metadata.get("setting")
        yield f, (meta.key if meta and meta.key else f.name)


def _build(cls: type[Any], data: Mapping[str, Any], prefix: str, sources: _Sources) -> Any:
    values: dict[str, Any] = {}
    known = []
    for f, name in settings_of(cls):
        known.append(name)
        key = prefix + name
        if "setting" in f.metadata:
            found = _setting_value(f.metadata["setting"], key, data, sources)
            if found is not _UNSET:
                values[f.name] = found
        elif "section" in f.metadata:
            table = data.get(name, {})
            if not isinstance(table, dict):
                raise ConfigError(f"config error: {key} {sources.where}: expected a table [{key}]")
            values[f.name] = _build(f.metadata["section"], table, key + ".", sources)
        else:
            values[f.name] = _table_array(f.metadata["table_array"], data.get(name, []), key, sources)
    for name in data:
        if name not in known:
            raise ConfigError(_unknown_key(prefix, name, known, sources.where))
    return cls(**values)


_UNSET = object()


def _setting_value(meta: Setting, key: str, data: Mapping[str, Any], sources: _Sources) -> object:
    value: object = _UNSET
    if key.split(".")[-1] in data:
        value = _parse(meta, key, data[key.split(".")[-1]], sources.where, meta.kind.parse)
    if meta.env and meta.env in sources.env:
        value = _parse(meta, key, sources.env[meta.env], f"from {meta.env}", meta.kind.parse_env)
    if key in sources.overrides:
        flag = "--" + key.split(".")[-1]
        value = _parse(meta, key, sources.overrides[key], f"from {flag}", meta.kind.parse)
    return value


def _parse(meta: Setting, key: str, value: object, where: str, parse: Any) -> object:
    try:
        return parse(value)
    except (ValueError, TypeError):
        shown = '"<hidden>"' if meta.secret or meta.kind.carries_password else _show(value)
        source = f" ({where})" if where else ""
        raise ConfigError(f"config error: {key} = {shown}{source}: expected {meta.kind.expected}") from None


def _table_array(cls: type[Any], entries: object, key: str, sources: _Sources) -> tuple[Any, ...]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"config error: {key} {sources.where}: expected [[{key}]] tables")
    no_env = _Sources({}, {}, sources.where)
    built = tuple(_build(cls, e, f"{key}[{i}].", no_env) for i, e in enumerate(entries))
    if cls is OidcClientSettings:  # a client's secret may come from OIDC_CLIENT_<ID>_SECRET
        built = tuple(_client_secret_from_env(c, sources.env) for c in built)
    return built


def _client_secret_from_env(client: OidcClientSettings, env: Mapping[str, str]) -> OidcClientSettings:
    secret = env.get(client_secret_env(client.id))
    return replace(client, secret=secret) if secret else client


def _unknown_key(prefix: str, name: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    shown = name if name.replace("_", "").isalnum() else json.dumps(name)
    return f"config error: unknown key {prefix}{shown} {where}{hint}".replace("  ", " ")


def _show(value: object) -> str:
    text = toml_value(value)
    return text if len(text) <= 80 else text[:77] + "..."


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _derive(config: Config) -> Config:
    server = config.server
    public_url = server.public_url.rstrip("/") or f"http://localhost:{server.port}"
    parts = urlsplit(public_url)
    webauthn = config.webauthn
    email = config.email
    file_dir = email.file_dir or str(Path(config.database.path).parent / "outbox")
    oidc = config.oidc
    return replace(
        config,
        server=replace(server, public_url=public_url),
        oidc=replace(
            oidc, access_ttl=oidc.access_ttl or config.jwt.access_ttl, refresh_ttl=oidc.refresh_ttl or config.jwt.refresh_ttl,
            clients=tuple(replace(c, name=c.name or c.id) for c in oidc.clients),
        ),
        email=replace(email, file_dir=file_dir),
        ui=replace(config.ui, product_name=config.ui.product_name or config.webauthn.rp_name),
        auth=replace(config.auth, allowed_redirects=config.auth.allowed_redirects or (public_url + "/",)),
        webauthn=replace(
            webauthn,
            rp_id=webauthn.rp_id or (parts.hostname or ""),
            origins=webauthn.origins or (origin_of(public_url),),
        ),
    )


def _validate(config: Config) -> None:
    if config.database.url and not config.jwt.secret:
        raise ConfigError(
            "config error: jwt.secret is missing: with database.url every server must share one "
            "(make one with `passwordless gen-secret`)"
        )
    if config.database.path.strip() in ("", ":memory:"):
        raise ConfigError(f"config error: database.path = {_show(config.database.path)}: expected a file path")
    email = config.email
    if email.retry_initial > email.retry_max:
        raise ConfigError("config error: email.retry_initial is longer than email.retry_max: expected it shorter")
    rp_id = config.webauthn.rp_id
    for origin in config.webauthn.origins:
        host = urlsplit(origin).hostname or ""
        if host != rp_id and not host.endswith("." + rp_id):
            raise ConfigError(
                f"config error: webauthn.rp_id = {_show(rp_id)} does not fit origin {_show(origin)}: "
                "expected the origin's host or a parent domain of it"
            )
    for i, hook in enumerate(config.webhooks):
        if not hook.url:
            raise ConfigError(f"config error: webhooks[{i}].url is missing: expected an absolute http(s) URL")
    _validate_clients(config.oidc.clients, config.production)


def _validate_clients(clients: tuple[OidcClientSettings, ...], production: bool) -> None:
    """OIDC.md: one line per refusal, first problem first."""
    seen: set[str] = set()
    for i, c in enumerate(clients):
        at = f"oidc.clients[{i}]"
        for problem in client_problems(c, production):
            raise ConfigError(f"config error: {at} ({c.id or 'no id'}): {problem.text}")
        if c.id in seen:
            raise ConfigError(f"config error: {at}: a second client with id {_show(c.id)}: expected one id per client")
        seen.add(c.id)


def _refuse_insecure(config: Config) -> None:
    """Production refuses what is only fit for a laptop, one line per problem."""
    refusals = [
        (
            len(config.jwt.secret) < 32,
            "jwt.secret must be at least 32 characters in production (it signs tokens and keys "
            "one-time codes; make one with `passwordless gen-secret`)",
        ),
        (
            config.email.transport == "console",
            'email.transport = "console" is refused in production: expected "smtp" or "file"',
        ),
        (
            not config.server.public_url.startswith("https://"),
            f"server.public_url = {_show(config.server.public_url)} is refused in production: "
            "expected an https:// URL",
        ),
        (config.cors.allow_all, "cors.allow_all = true is refused in production: list cors.allowed_origins"),
        (
            0 < len(config.admin.token) < 32,
            "admin.token is shorter than 32 characters: refused in production",
        ),
        (
            0 < len(config.metrics.token) < 32,
            "metrics.token is shorter than 32 characters: refused in production",
        ),
    ]
    refusals += [
        (not hook.secret, f"webhooks[{i}].secret is missing: refused in production")
        for i, hook in enumerate(config.webhooks)
    ]
    for refused, message in refusals:
        if refused:
            raise ConfigError("config error: " + message)
