"""The command under test as a process: where it is, a clean environment to run it in, a
free port for it, and stopping it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from passwordless.config.settings import Config

# The command under test: the installed console script, or (CI, after scripts/build-binary)
# the single-file executable named by PASSWORDLESS_EXECUTABLE.
EXECUTABLE = str(Path(os.environ.get("PASSWORDLESS_EXECUTABLE") or Path(sys.executable).parent / "passwordless").absolute())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config_env_names() -> set[str]:
    """Environment variables the server reads as settings (they would override its file)."""
    names = {"PASSWORDLESS_CONFIG"}

    def walk(cls: type[Any]) -> None:
        for f in fields(cls):
            if "setting" in f.metadata and f.metadata["setting"].env:
                names.add(f.metadata["setting"].env)
            for key in ("section", "table_array"):
                if key in f.metadata:
                    walk(f.metadata[key])

    walk(Config)
    return names


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the settings it may hold, plus `extra`."""
    drop = config_env_names()
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `passwordless ARGS` (the installed console script) and capture what it prints."""
    return subprocess.run(
        [EXECUTABLE, *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop_process(process: subprocess.Popen[str], timeout: float = 15) -> None:
    """Stop a server left running by a test: SIGTERM first, since SIGKILL on the single-file
    executable's launcher would leave its Python child running; SIGKILL only if that fails."""
    if process.poll() is None:
        process.terminate()
        try:
            process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
