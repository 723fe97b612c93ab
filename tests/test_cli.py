"""The `passwordless` command, run as a user runs it: the installed console script."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from passwordless import __version__
from tests.support.processes import clean_env, cli


def write_config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'{text}\n[database]\npath = "{tmp_path / "auth.db"}"\n', encoding="utf-8")
    return path


def test_version(tmp_path: Path) -> None:
    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"passwordless {__version__}"


def test_python_dash_m_works_too(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "passwordless", "--version"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.stdout.strip() == f"passwordless {__version__}"


def test_gen_secret_prints_a_new_long_secret_each_time(tmp_path: Path) -> None:
    first, second = cli("gen-secret", cwd=tmp_path), cli("gen-secret", cwd=tmp_path)
    assert first.returncode == 0
    assert len(first.stdout.strip()) >= 43
    assert first.stdout != second.stdout


def test_check_config_prints_effective_values_with_secrets_masked(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[jwt]\nsecret = "a-very-secret-value-that-is-long-enough"\n[server]\nport = 4100')
    result = cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "port = 4100" in result.stdout
    assert 'public_url = "http://localhost:4100"' in result.stdout
    assert 'secret = "********"' in result.stdout
    assert "a-very-secret-value" not in result.stdout


def test_check_config_honours_the_environment_and_passwordless_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[server]\nport = 4100")
    result = cli("check-config", cwd=tmp_path, env=clean_env(PASSWORDLESS_CONFIG=str(config), PORT="4200"))
    assert result.returncode == 0, result.stderr
    assert "port = 4200" in result.stdout


def test_a_bad_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[server]\nport = "eighty"')
    for command in ("check-config", "serve", "migrate", "healthcheck"):
        result = cli(command, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 2, command
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert "server.port" in result.stderr and '"eighty"' in result.stderr
        assert "Traceback" not in result.stderr


def test_a_production_refusal_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = cli("check-config", cwd=tmp_path, env=clean_env(ENVIRONMENT="production"))
    assert result.returncode == 2
    assert result.stderr.startswith("config error: jwt.secret")
    assert result.stderr.strip().count("\n") == 0


def test_a_missing_config_file_is_refused(tmp_path: Path) -> None:
    result = cli("check-config", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.toml" in result.stderr


def test_migrate_creates_the_database_then_reports_it_up_to_date(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    first = cli("migrate", "--config", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_init.sql" in first.stdout
    with sqlite3.connect(tmp_path / "auth.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "sessions", "email_queue", "schema_migrations"} <= tables
    again = cli("migrate", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 0
    assert "applied" not in again.stdout and "up to date" in again.stdout


def test_migrate_refuses_a_database_whose_migration_was_edited(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert cli("migrate", "--config", str(config), cwd=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "auth.db") as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'feedface' WHERE version = 1")
    for command in ("migrate", "serve"):
        result = cli(command, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 1, command
        assert "0001_init.sql was edited after it was applied" in result.stderr
        assert "Traceback" not in result.stderr


def test_healthcheck_fails_when_nothing_listens(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[server]\nport = 1")
    result = cli("healthcheck", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "127.0.0.1:1/readiness" in result.stderr
