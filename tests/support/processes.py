"""The command under test as a process: where it is, a clean environment to run it in, a
free port for it, and stopping it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

# The command under test: the installed console script, or (CI, after scripts/build-binary)
# the single-file executable named by PASSWORDLESS_EXECUTABLE.
EXECUTABLE = str(Path(os.environ.get("PASSWORDLESS_EXECUTABLE") or Path(sys.executable).parent / "passwordless").absolute())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# Environment variables that would change the configuration of a server started by a test.
CONFIG_ENV_VARS = (
    "PASSWORDLESS_CONFIG", "ENVIRONMENT", "HOST", "PORT", "PUBLIC_URL", "TRUSTED_PROXIES",
    "DATABASE_PATH", "JWT_SECRET", "JWT_ALGORITHM", "WEBAUTHN_RP_ID", "WEBAUTHN_ORIGIN",
    "EMAIL_TRANSPORT", "EMAIL_FROM", "EMAIL_FILE_DIR", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD",
    "SMTP_SECURITY", "CORS_ALLOWED_ORIGINS", "ADMIN_TOKEN", "METRICS_TOKEN", "LOG_LEVEL",
    "LOG_FORMAT", "DRAIN_DELAY",
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_ENV_VARS}
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
