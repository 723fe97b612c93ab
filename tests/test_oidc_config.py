"""[oidc] and [[oidc.clients]] (OIDC.md, "Clients and users"): defaults, the secret from the
environment, and the start-up refusals, one line each."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from passwordless.config.load import ConfigError, load_config
from passwordless.config.settings import Config

SECRET = "s" * 40
CLIENT = f'''
[[oidc.clients]]
id = "grafana"
secret = "{SECRET}"
redirect_uris = ["https://grafana.example.com/login/generic_oauth"]
'''


def load(tmp_path: Path, toml: str, env: dict[str, str] | None = None, production: bool = False) -> Config:
    head = ""
    if production:
        head = (
            'environment = "production"\n[server]\npublic_url = "https://auth.example.com"\n'
            f'[jwt]\nsecret = "{"j" * 40}"\n[email]\ntransport = "file"\n'
        )
    path = tmp_path / "config.toml"
    path.write_text(head + toml, encoding="utf-8")
    return load_config(path, env or {})


def refusal(tmp_path: Path, toml: str, production: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, toml, production=production)
    message = str(info.value)
    assert message.startswith("config error: oidc.clients[") and "\n" not in message, message
    return message


def test_defaults_follow_jwt_and_a_client_gets_its_name_from_its_id(tmp_path: Path) -> None:
    config = load(tmp_path, '[jwt]\naccess_ttl = "5m"\nrefresh_ttl = "7d"\n' + CLIENT)
    oidc = config.oidc
    assert (oidc.code_ttl, oidc.id_token_ttl, oidc.access_ttl, oidc.refresh_ttl) == (60, 3600, 300, 7 * 86400)
    client = oidc.clients[0]
    assert client.name == "grafana" and client.require_pkce and not client.public
    assert client.scopes == ("openid", "email", "groups", "offline_access")
    assert client.id_token_signed_response_alg == "RS256"


def test_own_ttls_win(tmp_path: Path) -> None:
    config = load(tmp_path, '[oidc]\naccess_ttl = "2m"\nrefresh_ttl = "1d"\ncode_ttl = "30s"\n')
    assert (config.oidc.code_ttl, config.oidc.access_ttl, config.oidc.refresh_ttl) == (30, 120, 86400)


def test_the_secret_comes_from_the_environment(tmp_path: Path) -> None:
    toml = CLIENT.replace(f'secret = "{SECRET}"\n', "").replace('"grafana"', '"my-app.1"')
    config = load(tmp_path, toml, {"OIDC_CLIENT_MY_APP_1_SECRET": "from-env" * 5})
    assert config.oidc.clients[0].secret == "from-env" * 5


def test_a_secret_hash_is_enough(tmp_path: Path) -> None:
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    config = load(tmp_path, CLIENT.replace(f'secret = "{SECRET}"', f'secret_sha256 = "{digest}"'))
    assert config.oidc.clients[0].secret_sha256 == digest


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param(('redirect_uris = ["https://grafana.example.com/login/generic_oauth"]', ""), "redirect_uris", id="no-redirect"),
        pytest.param(("/generic_oauth", "/generic_oauth#frag"), "fragment", id="fragment"),
        pytest.param((f'secret = "{SECRET}"', ""), "without a secret", id="no-secret"),
        pytest.param((f'secret = "{SECRET}"', "public = true\nrequire_pkce = false"), "require_pkce", id="public-no-pkce"),
        pytest.param(('id = "grafana"', 'id = "grafana"\nscopes = ["email"]'), "openid", id="no-openid"),
    ],
)
def test_refusals(tmp_path: Path, change: tuple[str, str], words: str) -> None:
    assert change[0] in CLIENT
    assert words in refusal(tmp_path, CLIENT.replace(*change))


def test_two_clients_with_one_id_are_refused(tmp_path: Path) -> None:
    assert "second client" in refusal(tmp_path, CLIENT + CLIENT)


def test_production_refuses_plain_http_but_not_loopback_and_short_secrets(tmp_path: Path) -> None:
    plain = CLIENT.replace("https://grafana.example.com", "http://grafana.example.com")
    assert "plain http" in refusal(tmp_path, plain, production=True)
    load(tmp_path, plain, production=False)
    for loopback in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        load(tmp_path, CLIENT.replace("https://grafana.example.com", loopback), production=True)
    assert "32 characters" in refusal(tmp_path, CLIENT.replace(SECRET, "short"), production=True)


def test_a_refusal_stops_check_config_with_exit_2_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CLIENT + CLIENT, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "passwordless", "check-config", "--config", str(path)],
        cwd=tmp_path, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("config error: oidc.clients[1]") and result.stderr.strip().count("\n") == 0


def test_check_config_masks_client_secrets(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CLIENT, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "passwordless", "check-config", "--config", str(path)],
        cwd=tmp_path, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert result.returncode == 0, result.stderr
    assert "[[oidc.clients]]" in result.stdout and SECRET not in result.stdout
