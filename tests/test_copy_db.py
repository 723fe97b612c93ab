"""`passwordless copy-db`: a live-looking SQLite database (users signed in, a passkey, signing keys,
emails sent and queued, audit rows) copied into an empty PostgreSQL database, then served from
there: the users are still signed in and their passkeys still work. The copy refuses a target
that holds anything. These run on the suite's PostgreSQL cluster whichever engine the run is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from passwordless.config.load import load_config
from passwordless.config.settings import Config
from passwordless.platform import storage
from passwordless.platform.copydb import TABLES
from tests.support.authenticator import SoftAuthenticator
from tests.support.engine import cluster, connect
from tests.support.processes import clean_env, cli
from tests.support.signin import FILE_MAIL, NO_RATE_LIMITS, bearer
from tests.test_passkeys import Server

pytestmark = pytest.mark.anyio

SECRET = "copy-db-test-secret-0123456789abcdefghij"
SETTINGS = FILE_MAIL + NO_RATE_LIMITS + f'[jwt]\nalgorithm = "ES256"\nsecret = "{SECRET}"\n'


def config_file(folder: Path, url: str | None = None) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "config.toml"
    database = f'[database]\npath = "{folder / "auth.db"}"\n' + (f'url = "{url}"\n' if url else "")
    path.write_text(SETTINGS + database, encoding="utf-8")
    return path


def counts(config: Config) -> dict[str, int]:
    with connect(Path(config.database.path), config.database.url or None) as conn:
        return {table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) for table in TABLES}


def copy_db(config: Path, *args: str) -> Any:
    return cli("copy-db", "--config", str(config), *args, cwd=config.parent, env=clean_env())


async def test_users_keep_their_sessions_and_passkeys_after_moving_to_postgresql(tmp_path: Path) -> None:
    device = SoftAuthenticator()
    source_file = config_file(tmp_path / "sqlite")
    source = load_config(source_file, {})
    async with Server.serving(source) as server:  # life on SQLite
        ann = await server.sign_in("ann@example.com")
        headers = bearer(ann["access_token"])
        await server.register(headers, device, name="Ann's key")
        bob = await server.sign_in("bob@example.com", by_code=True)
        logged_in = await server.login(device)
        assert logged_in.status_code == 200, logged_in.text
    before = counts(source)
    assert all(before[t] for t in ("users", "sessions", "passkeys", "email_queue", "audit_logs", "signing_keys"))

    url = cluster().create_database()
    copied = copy_db(source_file, "--to", url)
    assert copied.returncode == 0, copied.stderr
    for table, count in before.items():
        assert f"copied {count:>8} {table}" in copied.stdout
    assert "the counts match" in copied.stdout
    assert url.split("@")[1] in copied.stdout  # says where it went

    target = load_config(config_file(tmp_path / "postgres", url), {})
    assert counts(target) == before
    async with Server.serving(target, server.clock) as moved:  # the same people, now on PostgreSQL
        assert (await moved.me(headers))["email"] == "ann@example.com"  # an access token from before
        refreshed = await moved.http.post("/auth/refresh", json={"refresh_token": bob["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["user"]["email"] == "bob@example.com"
        again = await moved.login(device)  # the passkey, its sign count carried over
        assert again.status_code == 200, again.text
        assert again.json()["user"]["email"] == "ann@example.com"
        assert [p["name"] for p in await moved.passkeys(headers)] == ["Ann's key"]


async def test_a_target_that_holds_anything_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    source_file = config_file(tmp_path / "sqlite")
    async with Server.serving(load_config(source_file, {})) as server:
        await server.sign_in("ann@example.com")
    url = cluster().create_database()
    assert copy_db(source_file, "--to", url).returncode == 0
    target = load_config(config_file(tmp_path / "postgres", url), {})
    filled = counts(target)

    refused = copy_db(source_file, "--to", url)
    assert refused.returncode == 2
    assert "is not empty" in refused.stderr and "users (1)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert counts(target) == filled


async def test_copies_back_from_postgresql_into_a_new_sqlite_file(tmp_path: Path) -> None:
    source_file = config_file(tmp_path / "sqlite")
    async with Server.serving(load_config(source_file, {})) as server:
        await server.sign_in("ann@example.com")
        await server.sign_in("bob@example.com")
    url = cluster().create_database()
    assert copy_db(source_file, "--to", url).returncode == 0

    back = tmp_path / "back.db"
    copied = copy_db(source_file, "--from", url, "--to", str(back))
    assert copied.returncode == 0, copied.stderr
    returned = load_config(config_file(tmp_path / "back"), {"DATABASE_PATH": str(back)})
    assert counts(returned) == counts(load_config(source_file, {}))


def test_a_wrong_source_or_password_is_one_clear_line(tmp_path: Path) -> None:
    source_file = config_file(tmp_path / "sqlite")
    missing = copy_db(source_file, "--from", str(tmp_path / "nope.db"), "--to", cluster().create_database())
    assert missing.returncode == 2 and "no such database file" in missing.stderr
    url = cluster().url("postgres").replace("postgres@", "postgres:hunter2@").replace("/postgres", "/nosuchdb")
    unreachable = copy_db(source_file, "--to", url)
    assert unreachable.returncode == 1
    assert "Traceback" not in unreachable.stderr and "hunter2" not in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1


def test_backup_and_restore_on_postgresql_point_to_pg_dump(tmp_path: Path) -> None:
    config = config_file(tmp_path / "postgres", cluster().create_database())
    for command, tool in (("backup", "pg_dump"), ("restore", "pg_restore")):
        answer = cli(command, str(tmp_path / "x.db"), "--config", str(config), cwd=config.parent, env=clean_env())
        assert answer.returncode == 2
        assert tool in answer.stderr and "docs/postgres.md" in answer.stderr and "Traceback" not in answer.stderr
    assert not (tmp_path / "x.db").exists()


def test_every_table_of_the_schema_is_copied(tmp_path: Path) -> None:
    """A table added by a later migration and forgotten in copy-db's list would be lost in a move."""
    config = load_config(config_file(tmp_path / "sqlite"), {})
    storage.bring_up_to_date(config.database)
    with connect(Path(config.database.path), None) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables - {"schema_migrations"} == set(TABLES)
