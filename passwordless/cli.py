"""The `passwordless` command: argument parsing, then a call into the app."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from passwordless import __version__
from passwordless.config.load import ConfigError, find_config_file, load_config
from passwordless.config.render import render_effective
from passwordless.config.settings import Config, DatabaseSettings
from passwordless.housekeeping import service as housekeeping
from passwordless.keys import service as keys
from passwordless.keys.signer import SigningKey
from passwordless.mail.queue import QueuedEmail
from passwordless.mail.render import BUILT_IN, TemplateError, Templates
from passwordless.mail.transport import PermanentFailure, TemporaryFailure, make_transport
from passwordless.oidc import store as oidc_store
from passwordless.platform import backup, copydb, migrate, storage
from passwordless.platform.crypto import hs256_key, load_or_create_dev_secret, new_id, new_secret
from passwordless.platform.logs import configure_logging
from passwordless.web import markup

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, TemplateError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except (migrate.MigrationError, backup.BackupError, storage.DriverMissing, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not storage.is_database_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="passwordless", description="Passwordless sign-in server.")
    parser.add_argument("--version", action="version", version=f"passwordless {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str, config: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if config:
            sub.add_argument("--config", metavar="PATH", help="config file (default: $PASSWORDLESS_CONFIG or ./config.toml)")
        sub.set_defaults(handler=handler)
        return sub

    serve = command("serve", _serve, "Run the server.")
    serve.add_argument("--host", help="address to listen on (overrides server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides server.port)")
    command("migrate", _migrate, "Apply pending database migrations.")
    command("check-config", _check_config, "Print the effective configuration, secrets masked.")
    command("gen-secret", _gen_secret, "Print a new random secret.", config=False)
    command("healthcheck", _healthcheck, "Exit 0 when the local server's /readiness answers 200, else 1.")
    backup = command("backup", _backup, "Copy the database, consistently, while the server runs.")
    backup.add_argument("destination", metavar="DEST", help="a file name, or a folder for a dated file")
    restore = command("restore", _restore, "Replace the database with a backup (the server must be stopped).")
    restore.add_argument("source", metavar="SRC", help="the backup file")
    copy_db = command("copy-db", _copy_db, "Copy everything into an empty database: from the SQLite file to "
                      "PostgreSQL, say (stop the servers first: writes made meanwhile are not carried).")
    copy_db.add_argument("--to", required=True, metavar="DB", help="the target: postgresql://… or a SQLite file path")
    copy_db.add_argument("--from", dest="source", metavar="DB",
                         help="the source, if not the configured database: postgresql://… or a SQLite file path")
    prune = command("prune", _prune, "Delete what is past its retention (expired tickets, sessions, old emails, …).")
    prune.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    test_email = command("send-test-email", _send_test_email, "Send a test email through the configured transport.")
    test_email.add_argument("to", metavar="TO", help="the address to send it to")
    keys = command("keys", _keys, "Manage JWT signing keys.")
    keys.add_argument(
        "action", choices=["rotate", "hs256-key"],
        help="rotate (ES256, EdDSA): publish a new signing key at once and sign with it once cached JWKS "
        "copies have it (the old key stays published until the tokens it signed have expired); "
        "hs256-key (HS256): print the key apps verify access tokens with (derived from jwt.secret, "
        "which apps never need)",
    )
    keys.add_argument("--now", action="store_true", help="rotate: sign with the new key at once (an emergency: "
                      "verifiers holding a cached JWKS refuse the new tokens until they fetch it again)")
    return parser


def _load(args: argparse.Namespace, overrides: dict[str, object] | None = None) -> tuple[Config, Path | None]:
    path = find_config_file(args.config, os.environ, Path.cwd())
    return load_config(path, os.environ, overrides), path


def _serve(args: argparse.Namespace) -> int:
    overrides = {f"server.{k}": v for k in ("host", "port") if (v := getattr(args, k)) is not None}
    config, _ = _load(args, overrides)
    configure_logging(config.log.level, config.log.format)
    # Check templates and apply migrations before the server starts, so a problem is one clear
    # line, not a traceback.
    Templates(config.email.templates_dir)
    storage.bring_up_to_date(config.database)
    if not config.jwt.secret:  # a key file others can read stops start-up in one line
        try:
            load_or_create_dev_secret(Path(config.database.path).parent)
        except ValueError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return 2
    from passwordless.server import serve  # uvicorn is needed only here

    return serve(config)


def _migrate(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    applied = storage.bring_up_to_date(config.database)
    for migration in applied:
        print(f"applied {migration.file_name}")
    print(f"{storage.describe(config.database)} is up to date")
    return 0


def _backup(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    if config.database.url:
        return _not_on_postgres("backup", "pg_dump --format=custom --file=passwordless.dump DATABASE_URL")
    made = backup.backup(Path(config.database.path), Path(args.destination))
    print(f"backed up {config.database.path} to {made} (integrity check ok)")
    return 0


def _restore(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    if config.database.url:
        return _not_on_postgres("restore", "pg_restore --clean --if-exists --dbname=DATABASE_URL passwordless.dump")
    kept = backup.restore(Path(config.database.path), Path(args.source))
    print(f"restored {config.database.path} from {args.source}; the previous database is kept at {kept}")
    return 0


def _copy_db(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    try:
        source = copydb.settings_for(args.source) if args.source else config.database
        target = copydb.settings_for(args.to) if args.to.startswith(("postgresql:", "postgres:")) or Path(
            args.to).exists() else DatabaseSettings(path=args.to)
        copied = copydb.copy(source, target)
    except copydb.CopyRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for table, count in copied.items():
        print(f"copied {count:>8} {table}")
    print(f"copied {storage.describe(source)} to {storage.describe(target)}; the counts match")
    return 0


def _not_on_postgres(command: str, instead: str) -> int:
    print(f"error: `passwordless {command}` works on the SQLite file; with database.url use PostgreSQL's own "
          f"tools: {instead} (docs/postgres.md)", file=sys.stderr)
    return 2


def _prune(args: argparse.Namespace) -> int:
    config, _ = _load(args)

    async def run() -> housekeeping.Pruned:
        db = await storage.open_migrated(config.database)
        try:
            return await housekeeping.prune(db, config, time.time(), dry_run=args.dry_run, more=oidc_store.PRUNERS, queues=oidc_store.QUEUE_PRUNERS)
        finally:
            await db.close()

    pruned = asyncio.run(run())
    verb = "would delete" if args.dry_run else "deleted"
    for name, count in pruned.gone.items():
        print(f"{verb} {count:>8} {name}")
    if pruned.left_to_another:
        print("another server is pruning this database at the same time: the rest is left to it")
    return 0


def _send_test_email(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    to = args.to.strip()
    if "@" not in to or any(c.isspace() or not c.isprintable() for c in to):
        print(f"error: {to!r} is not an email address", file=sys.stderr)
        return 2
    text = f"This is a test email from passwordless {__version__}: the {config.email.transport} transport works."
    body = markup.Templates(BUILT_IN).render("test_email.html", text=text)
    email = QueuedEmail(new_id(), to, "passwordless test email", text, body, 1)
    transport = make_transport(config.email)

    async def send() -> str:
        try:
            return await transport.send(email)
        finally:
            await transport.close()

    try:
        answer = asyncio.run(send())
    except (TemporaryFailure, PermanentFailure) as exc:
        kind = "temporary" if isinstance(exc, TemporaryFailure) else "permanent"
        print(f"failed ({kind}): {exc}", file=sys.stderr)
        return 1
    print(f"sent to {to} via {config.email.transport}: {answer}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    if args.action == "hs256-key":
        return _print_hs256_key(config)
    now = time.time()

    async def rotate() -> list[SigningKey]:
        db = await storage.open_migrated(config.database)
        try:
            return await db.write(keys.rotate_all, config.jwt.algorithm, now, at_once=args.now)
        finally:
            await db.close()

    try:
        made = asyncio.run(rotate())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key in made:
        switch = datetime.fromtimestamp(key.signs_from, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(f"new {key.algorithm} signing key {key.kid}, published now in /.well-known/jwks.json; "
              f"signing switches to it at {switch} (in {key.signs_from - int(now)} s)")
    return 0


def _print_hs256_key(config: Config) -> int:
    if config.jwt.algorithm != "HS256":
        print(f"error: jwt.algorithm is {config.jwt.algorithm}: apps verify access tokens with "
              "the keys at /.well-known/jwks.json, there is no HS256 key", file=sys.stderr)
        return 2
    secret = config.jwt.secret or load_or_create_dev_secret(Path(config.database.path).parent)
    print(hs256_key(secret))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config, path = _load(args)
    print(f"# config file: {path or 'none (built-in defaults and environment)'}")
    print(render_effective(config), end="")
    return 0


def _gen_secret(args: argparse.Namespace) -> int:
    print(new_secret())
    return 0


def _healthcheck(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(config.server.host, config.server.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{config.server.port}/readiness"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            print(f"{url}: {response.status}")
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
    return 1
