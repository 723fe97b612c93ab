"""The configuration contract (CONFIG.md): defaults, derived defaults, precedence, where the file
is found, one-line errors for every kind of bad value, production refusals and check-config output."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from functools import reduce
from pathlib import Path

import pytest

from passwordless.config.kinds import Rate
from passwordless.config.load import ConfigError, find_config_file, load_config
from passwordless.config.render import render_effective
from passwordless.config.settings import Config
from tests.conftest import MakeConfig
from tests.test_config_example import declared_settings

JWT_SECRET = "jwt-secret-0123456789-abcdefghijklmnop"
ADMIN_TOKEN = "admin-token-0123456789-abcdefghijklmn"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SHORT = "x" * 31


def value_at(config: Config, attr: str) -> object:
    return reduce(getattr, attr.split("."), config)


def error_of(load: Callable[[], object]) -> str:
    """The message of the ConfigError `load` raises, checked to be one line starting "config error: "."""
    with pytest.raises(ConfigError) as info:
        load()
    message = str(info.value)
    assert message.startswith("config error: "), message
    assert "\n" not in message and "\r" not in message, message
    return message


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


# --- defaults and derived defaults -------------------------------------------------------------


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("environment", "development"),
        ("production", False),
        ("server.port", 3000),
        ("server.host", "0.0.0.0"),
        ("server.public_url", "http://localhost:3000"),
        ("server.trusted_proxies", ()),
        ("webauthn.rp_id", "localhost"),
        ("webauthn.origins", ("http://localhost:3000",)),
        ("auth.allowed_redirects", ("http://localhost:3000/",)),
        ("database.path", "./data/auth.db"),
        ("email.transport", "console"),
        ("email.from_address", "passwordless <noreply@localhost>"),
        ("email.smtp.port", 587),
        ("jwt.secret", ""),
        ("jwt.algorithm", "HS256"),
        ("jwt.access_ttl", 900.0),
        ("jwt.refresh_ttl", 30 * 86400.0),
        ("email.retry_max", 3600.0),
        ("rate_limit.magic_link_per_email", Rate(5, 900.0)),
        ("rate_limit.verify_per_ip", Rate(60, 60.0)),
        ("rate_limit.passkey_per_ip", Rate(60, 60.0)),
        ("cors.allow_all", False),
        ("admin.token", ""),
        ("log.level", "info"),
        ("webhooks", ()),
    ],
)
def test_default_with_no_config_file(attr: str, expected: object) -> None:
    assert value_at(load_config(None, {}), attr) == expected


def test_derived_defaults_follow_the_port() -> None:
    config = load_config(None, {"PORT": "4000"})
    assert config.server.public_url == "http://localhost:4000"
    assert config.webauthn.origins == ("http://localhost:4000",)
    assert config.auth.allowed_redirects == ("http://localhost:4000/",)
    assert config.webauthn.rp_id == "localhost"


@pytest.mark.parametrize(
    ("public_url", "rp_id", "origin"),
    [
        ("https://auth.example.com/", "auth.example.com", "https://auth.example.com"),
        ("https://auth.example.com:8443", "auth.example.com", "https://auth.example.com:8443"),
        ("https://example.com/sso/", "example.com", "https://example.com"),
    ],
)
def test_derived_defaults_follow_public_url(public_url: str, rp_id: str, origin: str) -> None:
    config = load_config(None, {"PUBLIC_URL": public_url})
    stripped = public_url.rstrip("/")
    assert config.server.public_url == stripped
    assert config.webauthn.rp_id == rp_id
    assert config.webauthn.origins == (origin,)
    assert config.auth.allowed_redirects == (stripped + "/",)


def test_explicit_values_are_not_replaced_by_derived_defaults(make_config: MakeConfig) -> None:
    config = make_config(
        """
        [server]
        public_url = "https://auth.example.com"
        [auth]
        allowed_redirects = ["https://app.example.com/after-login"]
        [webauthn]
        rp_id = "example.com"
        origins = ["https://auth.example.com", "https://app.example.com"]
        """
    )
    assert config.auth.allowed_redirects == ("https://app.example.com/after-login",)
    assert config.webauthn.rp_id == "example.com"
    assert config.webauthn.origins == ("https://auth.example.com", "https://app.example.com")


# --- precedence: flag > environment > file > default -----------------------------------------


@pytest.mark.parametrize(
    ("file", "env", "overrides", "expected"),
    [
        pytest.param("", {}, {}, 3000, id="default"),
        pytest.param("[server]\nport = 3001", {}, {}, 3001, id="file-beats-default"),
        pytest.param("[server]\nport = 3001", {"PORT": "3002"}, {}, 3002, id="env-beats-file"),
        pytest.param("[server]\nport = 3001", {"PORT": "3002"}, {"server.port": 3005}, 3005, id="flag-beats-env"),
        pytest.param("", {}, {"server.port": 3005}, 3005, id="flag-alone"),
    ],
)
def test_precedence(
    config_file: Callable[[str], Path], file: str, env: dict[str, str], overrides: dict[str, object], expected: int
) -> None:
    assert load_config(config_file(file), env, overrides).server.port == expected


def test_flag_beats_env_for_host(config_file: Callable[[str], Path]) -> None:
    path = config_file('[server]\nhost = "10.0.0.1"')
    assert load_config(path, {"HOST": "10.0.0.2"}, {"server.host": "127.0.0.1"}).server.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "attr", "expected"),
    [
        (
            {"CORS_ALLOWED_ORIGINS": "https://app.example.com, https://admin.example.com/,,"},
            "cors.allowed_origins",
            ("https://app.example.com", "https://admin.example.com"),
        ),
        (
            {"TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1 ,2001:db8::/32"},
            "server.trusted_proxies",
            ("10.0.0.0/8", "192.168.1.1/32", "2001:db8::/32"),
        ),
        (
            {
                "PUBLIC_URL": "https://auth.example.com",
                "WEBAUTHN_RP_ID": "example.com",
                "WEBAUTHN_ORIGIN": "https://auth.example.com,https://login.example.com",
            },
            "webauthn.origins",
            ("https://auth.example.com", "https://login.example.com"),
        ),
    ],
    ids=["CORS_ALLOWED_ORIGINS", "TRUSTED_PROXIES", "WEBAUTHN_ORIGIN"],
)
def test_env_comma_lists(env: dict[str, str], attr: str, expected: tuple[str, ...]) -> None:
    assert value_at(load_config(None, env), attr) == expected


def test_env_list_replaces_the_file_list(make_config: MakeConfig) -> None:
    config = make_config('[server]\ntrusted_proxies = ["10.0.0.0/8"]', {"TRUSTED_PROXIES": "172.16.0.0/12"})
    assert config.server.trusted_proxies == ("172.16.0.0/12",)


PRODUCTION_ENV = {"JWT_SECRET": JWT_SECRET, "EMAIL_TRANSPORT": "smtp", "PUBLIC_URL": "https://auth.example.com"}

# (variable, value, attribute, expected value, other variables it needs)
ENV_VARS = [
    ("ENVIRONMENT", "production", "environment", "production", PRODUCTION_ENV),
    ("HOST", "127.0.0.1", "server.host", "127.0.0.1", {}),
    ("PORT", "8080", "server.port", 8080, {}),
    ("PUBLIC_URL", "https://auth.example.com", "server.public_url", "https://auth.example.com", {}),
    ("TRUSTED_PROXIES", "10.1.2.3", "server.trusted_proxies", ("10.1.2.3/32",), {}),
    ("DRAIN_DELAY", "10s", "server.drain_delay", 10.0, {}),
    ("DATABASE_PATH", "/var/lib/passwordless/auth.db", "database.path", "/var/lib/passwordless/auth.db", {}),
    ("DATABASE_URL", "postgresql://pw:secret@db:5432/auth", "database.url", "postgresql://pw:secret@db:5432/auth",
     {"JWT_SECRET": "x" * 32}),
    ("JWT_SECRET", JWT_SECRET, "jwt.secret", JWT_SECRET, {}),
    ("JWT_ALGORITHM", "EdDSA", "jwt.algorithm", "EdDSA", {}),
    ("WEBAUTHN_RP_ID", "example.com", "webauthn.rp_id", "example.com", {"PUBLIC_URL": "https://auth.example.com"}),
    ("WEBAUTHN_ORIGIN", "http://localhost:5173", "webauthn.origins", ("http://localhost:5173",), {}),
    ("EMAIL_TRANSPORT", "file", "email.transport", "file", {}),
    ("EMAIL_FROM", "Example <auth@example.com>", "email.from_address", "Example <auth@example.com>", {}),
    ("EMAIL_FILE_DIR", "/var/spool/outbox", "email.file_dir", "/var/spool/outbox", {}),
    ("SMTP_HOST", "smtp.example.com", "email.smtp.host", "smtp.example.com", {}),
    ("SMTP_PORT", "465", "email.smtp.port", 465, {}),
    ("SMTP_USERNAME", "mailer", "email.smtp.username", "mailer", {}),
    ("SMTP_PASSWORD", "smtp-password", "email.smtp.password", "smtp-password", {}),
    ("SMTP_SECURITY", "tls", "email.smtp.security", "tls", {}),
    ("CORS_ALLOWED_ORIGINS", "https://app.example.com", "cors.allowed_origins", ("https://app.example.com",), {}),
    ("ADMIN_TOKEN", ADMIN_TOKEN, "admin.token", ADMIN_TOKEN, {}),
    ("METRICS_TOKEN", "metrics-token", "metrics.token", "metrics-token", {}),
    ("LOG_LEVEL", "debug", "log.level", "debug", {}),
    ("LOG_FORMAT", "json", "log.format", "json", {}),
]


@pytest.mark.parametrize(("var", "text", "attr", "expected", "needs"), ENV_VARS, ids=[e[0] for e in ENV_VARS])
def test_every_env_var_is_honoured(
    var: str, text: str, attr: str, expected: object, needs: dict[str, str]
) -> None:
    assert value_at(load_config(None, needs), attr) != expected
    assert value_at(load_config(None, {**needs, var: text}), attr) == expected


def test_env_var_table_covers_every_declared_env_var() -> None:
    declared = {d.meta.env for d in declared_settings() if d.meta.env}
    assert declared == {e[0] for e in ENV_VARS}


# --- where the config file is found ----------------------------------------------------------


@pytest.fixture
def three_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """A --config file, a $PASSWORDLESS_CONFIG file, and ./config.toml in the working directory."""
    flag, env = tmp_path / "flag.toml", tmp_path / "env.toml"
    local = tmp_path / "cwd" / "config.toml"
    local.parent.mkdir()
    for path in (flag, env, local):
        path.write_text("", encoding="utf-8")
    monkeypatch.chdir(local.parent)
    return flag, env, local


def test_config_flag_comes_first(three_files: tuple[Path, Path, Path]) -> None:
    flag, env, local = three_files
    assert find_config_file(str(flag), {"PASSWORDLESS_CONFIG": str(env)}, local.parent) == flag


def test_config_env_var_comes_before_the_working_directory(three_files: tuple[Path, Path, Path]) -> None:
    _, env, local = three_files
    assert find_config_file(None, {"PASSWORDLESS_CONFIG": str(env)}, local.parent) == env


def test_config_toml_in_the_working_directory(three_files: tuple[Path, Path, Path]) -> None:
    _, _, local = three_files
    assert find_config_file(None, {}, local.parent) == local


def test_no_config_file_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_file(None, {}, tmp_path) is None


@pytest.mark.parametrize("via", ["flag", "env"])
def test_missing_explicit_config_file_is_an_error(three_files: tuple[Path, Path, Path], via: str) -> None:
    missing = str(three_files[0].parent / "nope.toml")
    flag, env = (missing, {}) if via == "flag" else (None, {"PASSWORDLESS_CONFIG": missing})
    message = error_of(lambda: find_config_file(flag, env, three_files[2].parent))
    assert missing in message


# --- one-line errors for bad values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key", "shown", "expected"),
    [
        pytest.param('[server]\nport = "3000"', "server.port", '"3000"', "an integer from 1 to 65535", id="str-for-int"),
        pytest.param("[server]\nport = 70000", "server.port", "70000", "an integer from 1 to 65535", id="int-range"),
        pytest.param('[auth]\nallow_signup = "true"', "auth.allow_signup", '"true"', "true or false", id="bool-as-str"),
        pytest.param(
            '[jwt]\naccess_ttl = "15 minutes"', "jwt.access_ttl", '"15 minutes"', 'a duration like "90s"', id="duration"
        ),
        pytest.param('[auth]\nmagic_link_ttl = "0s"', "auth.magic_link_ttl", '"0s"', "a duration like", id="zero"),
        pytest.param(
            '[rate_limit]\nmagic_link_per_email = "5 per minute"',
            "rate_limit.magic_link_per_email", '"5 per minute"', 'a rate like "5/15m"', id="rate",
        ),
        pytest.param('[log]\nlevel = "verbose"', "log.level", '"verbose"', '"debug", "info", "warning"', id="choice"),
        pytest.param(
            '[email.smtp]\nsecurity = "ssl"', "email.smtp.security", '"ssl"', 'one of "starttls", "tls"', id="smtp"
        ),
        pytest.param(
            '[cors]\nallowed_origins = "https://app.example.com"',
            "cors.allowed_origins", '"https://app.example.com"', "a list", id="list-expected",
        ),
        pytest.param(
            '[server]\npublic_url = "auth.example.com"',
            "server.public_url", '"auth.example.com"', "an absolute http:// or https:// URL", id="url",
        ),
        pytest.param(
            '[webauthn]\norigins = ["https://auth.example.com/login"]',
            "webauthn.origins", '["https://auth.example.com/login"]', "origin like https://app.example.com",
            id="origin-with-path",
        ),
        pytest.param(
            '[server]\ntrusted_proxies = ["10.0.0.300"]',
            "server.trusted_proxies", '["10.0.0.300"]', "IP address or network", id="network",
        ),
        pytest.param('[server]\nhost = 8080', "server.host", "8080", "a host name or IP address", id="int-for-str"),
        pytest.param('[email]\nfrom = 42', "email.from", "42", "an address such as", id="int-for-str-renamed-key"),
        pytest.param(
            '[webauthn]\nrp_id = "https://example.com"', "webauthn.rp_id", '"https://example.com"', "a domain name",
            id="domain",
        ),
    ],
)
def test_bad_value_in_file(make_config: MakeConfig, toml: str, key: str, shown: str, expected: str) -> None:
    message = error_of(lambda: make_config(toml))
    assert f"{key} = {shown} (in " in message and "config.toml" in message
    assert expected in message.partition(": expected ")[2]


@pytest.mark.parametrize(
    ("env", "key", "expected"),
    [
        ({"PORT": "http"}, "server.port", "an integer from 1 to 65535"),
        ({"SMTP_PORT": "0"}, "email.smtp.port", "an integer from 1 to 65535"),
        ({"EMAIL_TRANSPORT": "sendmail"}, "email.transport", '"console", "smtp", "file"'),
        ({"PUBLIC_URL": "ftp://auth.example.com"}, "server.public_url", "an absolute http:// or https:// URL"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}, "server.trusted_proxies", "IP address or network"),
        ({"ENVIRONMENT": "prod"}, "environment", '"development", "production"'),
        ({"EMAIL_FROM": "Zoë <zoë@example.com>"}, "email.from", "the address ASCII"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_value_from_env_names_the_variable(env: dict[str, str], key: str, expected: str) -> None:
    var, text = next(iter(env.items()))
    message = error_of(lambda: load_config(None, env))
    assert f'{key} = "{text}" (from {var})' in message
    assert expected in message


def test_bad_value_from_a_flag_names_the_flag() -> None:
    message = error_of(lambda: load_config(None, {}, {"server.port": 0}))
    assert "server.port = 0 (from --port)" in message


@pytest.mark.parametrize(
    ("toml", "mangled"),
    [
        ('[server]\ntrusted_proxies = ["nonsense"]', "10.0.0.0/8s"),
        ('[cors]\nallowed_origins = ["https://app.example.com/path"]', "port)s"),
        ('[[webhooks]]\nurl = "https://app.example.com/hooks"\nevents = ["user.signedup"]', '"sessions.revoked"s'),
    ],
    ids=["network-list", "origin-list", "event-list"],
)
def test_list_errors_say_what_each_item_should_be_without_mangling_it(
    make_config: MakeConfig, toml: str, mangled: str
) -> None:
    # The expected text of a list is made by pluralising the item's; an "s" glued to
    # "10.0.0.0/8" reads as a duration, and one after a quote or a bracket is noise.
    message = error_of(lambda: make_config(toml))
    assert "expected a list" in message
    assert mangled not in message, message


# --- secrets are never echoed ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "env", "secret"),
    [
        pytest.param("[jwt]\nsecret = 31415926535897932", {}, "31415926535897932", id="jwt-not-a-string"),
        pytest.param('[jwt]\nsecret = "hunter2-\\u0000-hunter2"', {}, "hunter2", id="jwt-nul"),
        pytest.param("[admin]\ntoken = 27182818284590452", {}, "27182818284590452", id="admin-not-a-string"),
        pytest.param("[metrics]\ntoken = 16180339887498948", {}, "16180339887498948", id="metrics-not-a-string"),
        pytest.param("[email.smtp]\npassword = 14142135623730950", {}, "14142135623730950", id="smtp-password"),
        pytest.param(
            '[[webhooks]]\nurl = "https://app.example.com/hooks"\nsecret = "whsec_tiny-hunter2"',
            {}, "tiny-hunter2", id="webhook-secret-bad-form",
        ),
        pytest.param("", {"JWT_SECRET": "env-hunter2\x00secret"}, "hunter2", id="jwt-from-env"),
        pytest.param("", {"ENVIRONMENT": "production", "JWT_SECRET": "short-hunter2"}, "hunter2", id="prod-jwt"),
        pytest.param(
            "", {**PRODUCTION_ENV, "ENVIRONMENT": "production", "ADMIN_TOKEN": "short-hunter2"}, "hunter2",
            id="prod-admin",
        ),
        pytest.param('[jwt]\nsecrt = "near-miss-hunter2"', {}, "hunter2", id="unknown-key"),
    ],
)
def test_secret_values_are_never_echoed_in_errors(
    make_config: MakeConfig, toml: str, env: dict[str, str], secret: str
) -> None:
    message = error_of(lambda: make_config(toml, env))
    assert secret not in message


# --- unknown keys, sections that are not tables, invalid TOML ---------------------------------


@pytest.mark.parametrize(
    ("toml", "named", "hint"),
    [
        ("[server]\nprot = 3000", "server.prot", "did you mean server.port?"),
        ('enviroment = "production"', "enviroment", "did you mean environment?"),
        ("[servr]\nport = 3000", "servr", "did you mean server?"),
        ('[email.smtp]\nhots = "mail"', "email.smtp.hots", "did you mean email.smtp.host?"),
        (
            '[[webhooks]]\nurl = "https://app.example.com/hooks"\nevent = []',
            "webhooks[0].event", "did you mean webhooks[0].events?",
        ),
        ("[server]\nzzzzzz = 1", "server.zzzzzz", None),
        ("[frobnicator]\nx = 1", "frobnicator", None),
    ],
)
def test_unknown_key(make_config: MakeConfig, toml: str, named: str, hint: str | None) -> None:
    message = error_of(lambda: make_config(toml))
    assert f"unknown key {named} " in message + " "
    if hint:
        assert hint in message
    else:
        assert "did you mean" not in message


@pytest.mark.parametrize(
    ("toml", "named", "expected"),
    [
        ("server = 5", "server", "a table [server]"),
        ('[email]\nsmtp = "localhost"', "email.smtp", "a table [email.smtp]"),
        ('[webhooks]\nurl = "https://app.example.com/hooks"', "webhooks", "[[webhooks]] tables"),
    ],
)
def test_section_that_is_not_a_table(make_config: MakeConfig, toml: str, named: str, expected: str) -> None:
    message = error_of(lambda: make_config(toml))
    assert message.startswith(f"config error: {named} ")
    assert f"expected {expected}" in message


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ("[server\nport = 3000", "line 1"),
        ('[server]\nport = \nhost = "127.0.0.1"', "line 2"),
        ('environment = "dev', "end of document"),
    ],
)
def test_invalid_toml(config_file: Callable[[str], Path], toml: str, where: str) -> None:
    path = config_file(toml)
    message = error_of(lambda: load_config(path, {}))
    assert f"{path} is not valid TOML" in message
    assert where in message


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[server]\nhost = "\xff"\n')
    assert f"cannot read {path}" in error_of(lambda: load_config(path, {}))


# --- cross-key validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "env"),
    [
        pytest.param('[webauthn]\nrp_id = "example.org"', {"PUBLIC_URL": "https://auth.example.com"}, id="other"),
        pytest.param('[webauthn]\nrp_id = "ample.com"', {"PUBLIC_URL": "https://example.com"}, id="not-on-a-dot"),
        pytest.param('[webauthn]\nrp_id = "auth.example.com"', {"PUBLIC_URL": "https://example.com"}, id="child"),
        pytest.param(
            '[webauthn]\nrp_id = "example.com"\norigins = ["https://auth.example.com", "https://evil.test"]',
            {}, id="one-of-many",
        ),
    ],
)
def test_rp_id_that_does_not_fit_an_origin_is_refused(
    make_config: MakeConfig, toml: str, env: dict[str, str]
) -> None:
    message = error_of(lambda: make_config(toml, env))
    assert "webauthn.rp_id" in message and "does not fit origin" in message


def test_rp_id_may_be_a_parent_domain_of_every_origin(make_config: MakeConfig) -> None:
    config = make_config(
        '[webauthn]\nrp_id = "example.com"\norigins = ["https://auth.example.com", "https://example.com"]'
    )
    assert config.webauthn.rp_id == "example.com"


def test_email_retry_initial_longer_than_retry_max_is_refused(make_config: MakeConfig) -> None:
    message = error_of(lambda: make_config('[email]\nretry_initial = "2h"\nretry_max = "1h"'))
    assert "email.retry_initial" in message and "email.retry_max" in message
    assert make_config('[email]\nretry_initial = "1h"\nretry_max = "1h"').email.retry_initial == 3600.0


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_database_path_must_be_a_file(make_config: MakeConfig, path: str) -> None:
    message = error_of(lambda: make_config(f'[database]\npath = "{path}"'))
    assert "database.path" in message and "a file path" in message


# --- webhooks --------------------------------------------------------------------------------


def test_webhooks_parse(make_config: MakeConfig) -> None:
    config = make_config(
        f"""
        [[webhooks]]
        url = "https://app.example.com/hooks/auth"
        secret = "{WEBHOOK_SECRET}"
        events = ["user.created", "login.succeeded"]

        [[webhooks]]
        url = "https://audit.example.com/in"
        """
    )
    first, second = config.webhooks
    assert (first.url, first.secret, first.events) == (
        "https://app.example.com/hooks/auth", WEBHOOK_SECRET, ("user.created", "login.succeeded")
    )
    assert (second.url, second.secret, second.events) == ("https://audit.example.com/in", "", ())


def test_webhook_with_a_bad_event_name_is_refused(make_config: MakeConfig) -> None:
    message = error_of(
        lambda: make_config('[[webhooks]]\nurl = "https://app.example.com/hooks"\nevents = ["user.signedup"]')
    )
    assert 'webhooks[0].events = ["user.signedup"]' in message
    assert '"user.created"' in message


def test_webhook_without_url_is_refused(make_config: MakeConfig) -> None:
    message = error_of(lambda: make_config(f'[[webhooks]]\nsecret = "{WEBHOOK_SECRET}"'))
    assert "webhooks[0].url" in message and "missing" in message


# --- production refusals ---------------------------------------------------------------------

PRODUCTION_TOML = f"""
environment = "production"

[server]
public_url = "https://auth.example.com"

[jwt]
secret = "{JWT_SECRET}"

[email]
transport = "smtp"

[admin]
token = "{ADMIN_TOKEN}"

[[webhooks]]
url = "https://app.example.com/hooks/auth"
secret = "{WEBHOOK_SECRET}"
"""


def test_valid_production_config_loads(make_config: MakeConfig) -> None:
    config = make_config(PRODUCTION_TOML)
    assert config.production
    assert config.server.public_url == "https://auth.example.com"
    assert config.webauthn.rp_id == "auth.example.com"


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        pytest.param(f'secret = "{JWT_SECRET}"', "", "jwt.secret", id="jwt-secret-missing"),
        pytest.param(f'secret = "{JWT_SECRET}"', f'secret = "{SHORT}"', "jwt.secret", id="jwt-secret-short"),
        pytest.param(
            f'secret = "{JWT_SECRET}"', 'algorithm = "ES256"', "jwt.secret", id="jwt-secret-missing-es256"
        ),
        pytest.param('transport = "smtp"', 'transport = "console"', "email.transport", id="console-email"),
        pytest.param("https://auth.example.com", "http://auth.example.com", "server.public_url", id="http"),
        pytest.param("[admin]", "[cors]\nallow_all = true\n[admin]", "cors.allow_all", id="cors-allow-all"),
        pytest.param(f'token = "{ADMIN_TOKEN}"', f'token = "{SHORT}"', "admin.token", id="admin-token-short"),
        pytest.param(f'secret = "{WEBHOOK_SECRET}"', "", "webhooks[0].secret", id="webhook-without-secret"),
        pytest.param("[admin]", f'[metrics]\ntoken = "{SHORT}"\n[admin]', "metrics.token", id="metrics-token-short"),
    ],
)
def test_production_refuses_each_insecure_setting(make_config: MakeConfig, old: str, new: str, named: str) -> None:
    assert old in PRODUCTION_TOML
    broken = PRODUCTION_TOML.replace(old, new)
    message = error_of(lambda: make_config(broken))
    assert message.startswith(f"config error: {named}") and "production" in message
    # The same setting is fine in development: it is refused because of production alone.
    assert not make_config(broken.replace('"production"', '"development"')).production


def test_admin_api_off_is_fine_in_production(make_config: MakeConfig) -> None:
    assert make_config(PRODUCTION_TOML.replace(f'token = "{ADMIN_TOKEN}"', "")).admin.token == ""


def test_production_via_environment_variable() -> None:
    assert load_config(None, {**PRODUCTION_ENV, "ENVIRONMENT": "production"}).production
    console = {**PRODUCTION_ENV, "ENVIRONMENT": "production", "EMAIL_TRANSPORT": "console"}
    message = error_of(lambda: load_config(None, console))
    assert "email.transport" in message


def test_production_env_var_beats_development_in_the_file(make_config: MakeConfig) -> None:
    message = error_of(lambda: make_config('environment = "development"', {"ENVIRONMENT": "production"}))
    assert "production" in message


# --- check-config output ---------------------------------------------------------------------


def test_render_effective_masks_secrets_and_shows_derived_values(make_config: MakeConfig) -> None:
    config = make_config(
        f"""
        [jwt]
        secret = "{JWT_SECRET}"
        [admin]
        token = "{ADMIN_TOKEN}"
        [email.smtp]
        password = "smtp-password-value"
        [[webhooks]]
        url = "https://app.example.com/hooks/auth"
        secret = "{WEBHOOK_SECRET}"
        """,
        {"PUBLIC_URL": "https://auth.example.com/"},
    )
    text = render_effective(config)
    for secret in (JWT_SECRET, ADMIN_TOKEN, "smtp-password-value", WEBHOOK_SECRET):
        assert secret not in text
    shown = tomllib.loads(text)
    assert shown["jwt"]["secret"] == "********"
    assert shown["admin"]["token"] == "********"
    assert shown["email"]["smtp"]["password"] == "********"
    assert shown["webhooks"][0]["secret"] == "********"
    assert shown["metrics"]["token"] == ""  # unset stays visibly unset
    assert shown["server"]["public_url"] == "https://auth.example.com"
    assert shown["webauthn"]["rp_id"] == "auth.example.com"
    assert shown["webauthn"]["origins"] == ["https://auth.example.com"]
    assert shown["auth"]["allowed_redirects"] == ["https://auth.example.com/"]
    assert shown["jwt"]["access_ttl"] == "15m"
    assert shown["rate_limit"]["magic_link_per_email"] == "5/15m"
    assert shown["email"]["from"] == "passwordless <noreply@localhost>"


def test_the_database_url_comes_from_the_environment_and_check_config_hides_its_password(
    make_config: MakeConfig,
) -> None:
    url = "postgresql://pw:s3cr%40t-pass@db.internal:5432/auth?sslmode=require"
    config = make_config(f'[jwt]\nsecret = "{JWT_SECRET}"\n', {"DATABASE_URL": url})
    assert config.database.url == url
    text = render_effective(config)
    assert "s3cr" not in text
    assert tomllib.loads(text)["database"]["url"] == "postgresql://pw:********@db.internal:5432/auth?sslmode=require"


@pytest.mark.parametrize(
    "url", ["mysql://pw:hunter2@db/auth", "postgresql://pw:hunter2@db", "postgresql://pw:hunter2@db:99999/auth"]
)
def test_a_bad_database_url_is_one_line_that_does_not_repeat_the_password(make_config: MakeConfig, url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(f'[jwt]\nsecret = "{JWT_SECRET}"\n', {"DATABASE_URL": url})
    message = str(refused.value)
    assert "database.url" in message and "DATABASE_URL" in message and "postgresql://" in message
    assert "hunter2" not in message and "\n" not in message


def test_postgresql_needs_the_jwt_secret_every_server_shares(make_config: MakeConfig) -> None:
    with pytest.raises(ConfigError, match="jwt.secret is missing: with database.url every server must share one"):
        make_config("", {"DATABASE_URL": "postgresql://pw@db/auth"})
