"""Helpers shared by tests: running the real app in-process and finding free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette

from passwordless.app import create_app
from passwordless.config.settings import Config
from passwordless.parts import Parts

PEER = ("203.0.113.7", 50000)

# The command under test: the installed console script, or (CI, after scripts/build-binary)
# the single-file executable named by PASSWORDLESS_EXECUTABLE.
EXECUTABLE = str(Path(os.environ.get("PASSWORDLESS_EXECUTABLE") or Path(sys.executable).parent / "passwordless").absolute())


@asynccontextmanager
async def running(
    config: Config, clock: Callable[[], float] = time.time, peer: tuple[str, int] = PEER
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app with its lifespan running (database open, migrations applied) and a client
    connecting from `peer`. Pass a clock to move time without sleeping."""
    app = create_app(config, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url=config.server.public_url) as client:
            yield app, client


def deps_of(app: Starlette) -> Parts:
    """What the app's lifespan built: each feature's dependencies (parts.py)."""
    return Parts(**{name: getattr(app.state, name) for name in Parts.__dataclass_fields__})


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


class FakeClock:
    """A clock that stands still until moved: `clock.advance(seconds)`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
