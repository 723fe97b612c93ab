"""Shared fixtures: a real SQLite file per test with the real migrations, and the ASGI app
with its lifespan running behind an httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from passwordless.config.load import load_config
from passwordless.config.settings import Config
from tests.support.app import running
from tests.support.engine import database_section, secret_env

MakeConfig = Callable[..., Config]

# Fixtures of the shared harnesses, for every test: live_server, start_server, launch (the real
# server) and chromium, browser, open_browser (Chromium).
pytest_plugins = ("tests.support.live", "tests.support.browser", "tests.support.pg_fixtures")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """A Config from TOML text (and environment variables), its database in tmp_path (and, on
    PostgreSQL, a fresh database of its own: tests/support/engine.py)."""

    def make(toml: str = "", env: dict[str, str] | None = None) -> Config:
        path = tmp_path / "config.toml"
        text = toml if "[database]" in toml else f"{toml}\n{database_section(tmp_path)}"
        path.write_text(text, encoding="utf-8")
        return load_config(path, secret_env(text, env or {}))

    return make


@pytest.fixture
async def app_and_client(make_config: MakeConfig) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    async with running(make_config()) as pair:
        yield pair


@pytest.fixture
def app(app_and_client: tuple[Starlette, httpx.AsyncClient]) -> Starlette:
    return app_and_client[0]


@pytest.fixture
def client(app_and_client: tuple[Starlette, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]
