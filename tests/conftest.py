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
from tests.support.engine import ON_POSTGRES, database_section, with_shared_secret

MakeConfig = Callable[..., Config]

# Fixtures of the shared harnesses, for every test: live_server, start_server, launch (the real
# server) and chromium, browser, open_browser (Chromium).
pytest_plugins = ("tests.support.live", "tests.support.browser", "tests.support.pg_fixtures")


# The suite runs twice (scripts/test): on SQLite, then on PostgreSQL (PASSWORDLESS_TEST_ENGINE,
# tests/support/engine.py). The second pass leaves out what it would only repeat: modules that
# never touch the configured database (checks of the code, the docs, the package, pure functions;
# and those that use PostgreSQL whatever the pass), and modules about SQLite itself (its engine,
# its migrations and backups, the files it keeps). They run, once, in the first pass.
ENGINE_INDEPENDENT = {
    "test_architecture", "test_config", "test_config_example", "test_copy_db", "test_deploy_files", "test_docs",
    "test_email_message", "test_email_templates", "test_fallback_stack", "test_ids", "test_install", "test_jwt_differential", "test_lock",
    "test_logs", "test_markup", "test_multi_server", "test_oidc_config", "test_postgres_engine", "test_postgres_support",
    "test_quality",
}
SQLITE_ONLY = {"test_cli", "test_db", "test_file_modes", "test_migrate", "test_operations_e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not ON_POSTGRES:
        return
    once = ENGINE_INDEPENDENT | SQLITE_ONLY
    left_out = [item for item in items if item.module is not None and item.module.__name__.split(".")[-1] in once]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        gone = set(left_out)
        items[:] = [item for item in items if item not in gone]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """A Config from TOML text (and environment variables), its database in tmp_path (and, on
    PostgreSQL, a fresh database of its own: tests/support/engine.py)."""

    def make(toml: str = "", env: dict[str, str] | None = None) -> Config:
        path = tmp_path / "config.toml"
        text = toml if "[database]" in toml else with_shared_secret(f"{toml}\n{database_section(tmp_path)}")
        path.write_text(text, encoding="utf-8")
        return load_config(path, env or {})

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
