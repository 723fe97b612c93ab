"""Files private to the server's user whatever the umask (issue 15 item 7): the data folder it
makes is 0700; the database, its -wal and -shm, backups, restored databases, .eml files and
secret.key are 0600; a secret.key others can read, or a symlink, stops start-up (one line, exit 2).
Each case runs the real `passwordless` executable under a umask set by the shell."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.live import LiveServer
from tests.support.processes import EXECUTABLE, clean_env, free_port
from tests.support.waiting import wait_until

UMASKS = [pytest.param(0o022, id="umask-022"), pytest.param(0o000, id="umask-000")]
CONFIG = '[email]\ntransport = "file"\n'


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def umask_prefix(umask: int) -> list[str]:
    """A shell that sets the umask, then becomes the command after it."""
    return ["sh", "-c", f'umask {umask:03o} && exec "$0" "$@"']


def under_umask(umask: int, *args: str) -> list[str]:
    return [*umask_prefix(umask), EXECUTABLE, *args]


def run(tmp_path: Path, umask: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        under_umask(umask, *args), cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def serve(launch: Callable[..., LiveServer], tmp_path: Path) -> Callable[[int], LiveServer]:
    def serve(umask: int) -> LiveServer:
        (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
        return launch("--config", "config.toml", prefix=umask_prefix(umask))

    return serve


def wait_for(folder: Path, pattern: str) -> list[Path]:
    return wait_until(lambda: sorted(folder.glob(pattern)) if folder.is_dir() else [], f"{pattern} in {folder}", 30, 0.05)


@pytest.mark.parametrize("umask", UMASKS)
def test_the_server_keeps_its_files_private(serve, tmp_path: Path, umask: int) -> None:  # type: ignore[no-untyped-def]
    serve(umask).request_link("someone@example.com")
    data = tmp_path / "data"
    emails = wait_for(data / "outbox", "*.eml")
    assert mode(data) == 0o700
    assert mode(data / "outbox") == 0o700
    for name in ("auth.db", "auth.db-wal", "auth.db-shm", "secret.key"):
        assert mode(data / name) == 0o600, name
    assert [mode(e) for e in emails] == [0o600] * len(emails)
    # Nothing in the folder is open to others: not the lock file either.
    assert [p.name for p in data.rglob("*") if mode(p) & 0o077] == []


@pytest.mark.parametrize("umask", UMASKS)
def test_backup_and_restore_make_private_files(tmp_path: Path, umask: int) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    assert run(tmp_path, umask, "migrate", "--config", "config.toml").returncode == 0
    (tmp_path / "backups").mkdir()
    made = run(tmp_path, umask, "backup", "--config", "config.toml", "backups/copy.db")
    assert made.returncode == 0, made.stderr
    assert mode(tmp_path / "backups" / "copy.db") == 0o600
    restored = run(tmp_path, umask, "restore", "--config", "config.toml", "backups/copy.db")
    assert restored.returncode == 0, restored.stderr
    assert mode(tmp_path / "data" / "auth.db") == 0o600


def test_an_existing_database_left_readable_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    assert run(tmp_path, 0o022, "migrate", "--config", "config.toml").returncode == 0
    os.chmod(tmp_path / "data" / "auth.db", 0o644)
    assert run(tmp_path, 0o022, "migrate", "--config", "config.toml").returncode == 0
    assert mode(tmp_path / "data" / "auth.db") == 0o600


def start_refused(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, "serve", "--config", "config.toml", "--port", str(free_port())],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("key_mode", [0o640, 0o604, 0o644], ids=["0640", "0604", "0644"])
def test_a_secret_key_others_can_read_stops_start_up(tmp_path: Path, key_mode: int) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "data").mkdir(mode=0o700)
    key = tmp_path / "data" / "secret.key"
    key.write_text("k" * 43 + "\n", encoding="ascii")
    os.chmod(key, key_mode)
    refused = start_refused(tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "secret.key" in refused.stderr and "refused" in refused.stderr
    assert "k" * 43 not in refused.stderr


def test_a_secret_key_that_is_a_symlink_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "data").mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.key"
    elsewhere.write_text("k" * 43 + "\n", encoding="ascii")
    os.chmod(elsewhere, 0o600)
    (tmp_path / "data" / "secret.key").symlink_to(elsewhere)
    refused = start_refused(tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "symlink" in refused.stderr
