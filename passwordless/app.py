"""create_app(config): the middleware, the route table and the lifespan that builds every
dependency (no module-level state)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from passwordless import __version__, parts
from passwordless.admin import client_routes as admin_clients
from passwordless.admin import routes as admin
from passwordless.clients.catalogue import Catalogue
from passwordless.config.kinds import origin_of
from passwordless.config.settings import Config
from passwordless.health import routes as health
from passwordless.housekeeping import service as housekeeping
from passwordless.keys import service as keys
from passwordless.keys.signer import Signer, SigningKey
from passwordless.magic_link import routes as magic_link
from passwordless.mail.render import Templates
from passwordless.mail.transport import make_transport
from passwordless.mail.worker import MailWorker
from passwordless.oidc import routes as oidc
from passwordless.oidc import store as oidc_store
from passwordless.oidc.backchannel import Backchannel
from passwordless.oidc.clients import find_client
from passwordless.oidc.operations import operations as oidc_operations
from passwordless.oidc.worker import BackchannelWorker
from passwordless.pages import routes as pages
from passwordless.passkeys import routes as passkeys
from passwordless.passkeys import store as passkey_store
from passwordless.platform import backup, storage
from passwordless.platform.clock import Clock
from passwordless.platform.crypto import load_or_create_dev_secret
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.errors import ApiError
from passwordless.platform.lifecycle import Lifecycle
from passwordless.platform.metrics import Metrics
from passwordless.platform.queues.worker import QueueWorker
from passwordless.sessions import routes as sessions
from passwordless.web import openapi
from passwordless.web.errors import handle_api_error, handle_http_exception
from passwordless.web.middleware import BodyLimit, Cors, RequestContext
from passwordless.webhooks.events import Outbox
from passwordless.webhooks.worker import WebhookWorker, retry_policy

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "pages" / "static"
PRUNE_SECONDS = 3600.0
OPERATIONS = {
    **sessions.operations, **magic_link.operations, **passkeys.operations, **health.operations, **admin.operations,
    **admin_clients.operations, **oidc_operations,
}


def create_app(config: Config, lifecycle: Lifecycle | None = None, clock: Clock = time.time) -> Starlette:
    life = lifecycle or Lifecycle()
    trusted = tuple(ipaddress.ip_network(p) for p in config.server.trusted_proxies)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            built = await _start(config, life, metrics, clock, stack)
            for name, part in vars(built).items():  # each feature's routes take their own (web/parts.py)
                setattr(app.state, name, part)
            logger.info("started", extra={"public_url": config.server.public_url, "environment": config.environment})
            yield
        logger.info("stopped")

    # The router tries each route in turn: the API that every signed-in request hits first.
    routes: list[BaseRoute] = [
        *sessions.routes, *magic_link.routes, *passkeys.routes, *health.routes, *pages.routes, *admin.routes,
        *admin_clients.routes, *oidc.routes,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    routes.append(openapi.serve(routes, OPERATIONS, __version__))
    app = Starlette(
        routes=routes,
        middleware=_middleware(config, trusted, metrics),
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception},
        lifespan=lifespan,
    )
    app.state.lifecycle = life
    # What the web kit needs to know, without knowing the features: whom to believe about the
    # client's address, and which origins may post to us.
    app.state.trusted_proxies = trusted
    app.state.allowed_origins = frozenset({origin_of(config.server.public_url), *config.cors.allowed_origins})
    return app


async def _prune(config: Config, db: Database, clock: Clock) -> None:
    pruned = await housekeeping.prune(db, config, clock(), more=oidc_store.PRUNERS, queues=oidc_store.QUEUE_PRUNERS)
    if any(pruned.gone.values()) or pruned.left_to_another:
        logger.info("pruned", extra={**pruned.gone, "left_to_another_server": pruned.left_to_another})


async def _start(
    config: Config,
    life: Lifecycle,
    metrics: Metrics,
    clock: Clock,
    stack: contextlib.AsyncExitStack,
) -> parts.Parts:
    """Open the database and start the background work; `stack` undoes it all, last first."""
    known = storage.migrations(config.database)
    templates = Templates(config.email.templates_dir)
    await asyncio.to_thread(storage.bring_up_to_date, config.database)
    if storage.dialect_of(config.database) == "sqlite":
        stack.enter_context(backup.held(Path(config.database.path), exclusive=False))  # `restore` waits for us
    db = await storage.open_database(config.database)
    stack.push_async_callback(db.close)
    # With PostgreSQL every server shares jwt.secret (config validation requires it).
    secret = config.jwt.secret or await asyncio.to_thread(load_or_create_dev_secret, Path(config.database.path).parent)
    catalogue = Catalogue.of(config.oidc.clients)
    signer = await _signer(config, db, secret, clock, catalogue)
    mail = MailWorker(db, config.email, make_transport(config.email), clock, metrics)
    workers: list[QueueWorker[Any]] = [mail]
    outbox = Outbox(config.webhooks)
    if config.webhooks:
        webhooks = WebhookWorker(db, config, clock, metrics)
        outbox.wake_with(webhooks.wake, asyncio.get_running_loop())
        workers.append(webhooks)
    backchannel = Backchannel(lambda conn, client_id: find_client(conn, catalogue, client_id))
    logouts = BackchannelWorker(db, clock, retry_policy(config), metrics, config.server.public_url)
    backchannel.wake_with(logouts.wake, asyncio.get_running_loop())
    workers.append(logouts)
    for worker in workers:
        _background(stack, worker.run(), worker.stop)
    keys_needed = _keep_keys_loaded(config, db, signer, clock, catalogue, stack)
    _background(stack, _every(PRUNE_SECONDS, lambda: _prune(config, db, clock)))
    return parts.build(parts.Opened(
        config=config, db=db, clock=clock, lifecycle=life, migrations=known, metrics=metrics, secret=secret,
        signer=signer, templates=templates, wake_mail=mail.wake, outbox=outbox, backchannel=backchannel,
        count_passkeys=passkey_store.count_for_user, catalogue=catalogue, keys_needed=keys_needed,
    ))


def _background(
    stack: contextlib.AsyncExitStack, job: Coroutine[Any, Any, None],
    stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run `job` until the app stops: then `stop()` it gently, if it can be, and cancel it."""
    task = asyncio.create_task(job)

    async def end() -> None:
        if stop:
            await stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(end)


async def _signer(config: Config, db: Database, secret: str, clock: Clock, catalogue: Catalogue) -> Signer:
    jwt = config.jwt
    signer = Signer(
        algorithm=jwt.algorithm, secret=secret, issuer=config.server.public_url, audience=jwt.audience,
        access_ttl=jwt.access_ttl,
    )
    if jwt.algorithm in keys.ASYMMETRIC:
        await db.write(keys.ensure_current, jwt.algorithm, clock())
    if config.oidc.clients:  # the provider's keys: made when a client exists, never before
        algorithms = [c.id_token_signed_response_alg for c in config.oidc.clients]
        await keys.ensure_keys(db, algorithms, clock())
    await _load_keys(config, db, signer, clock, catalogue)  # with HS256, the provider's keys (API clients) for the JWKS
    return signer


def _keep_keys_loaded(
    config: Config, db: Database, signer: Signer, clock: Clock, catalogue: Catalogue, stack: contextlib.AsyncExitStack,
) -> Callable[[Sequence[str]], Awaitable[None]]:
    """Reload the published keys every KEY_RELOAD_SECONDS, and at once when any server makes or
    rotates one (NOTIFY, PostgreSQL). On every server, whatever its configuration: a client made
    through the admin API, on any server, brings the provider's keys. Answers the admin API's
    `keys_needed`: make the keys a client needs and publish them here before the client exists."""
    rotated = asyncio.Event()
    db.listen(keys.ROTATED, rotated.set)

    async def reload_keys() -> None:
        await _load_keys(config, db, signer, clock, catalogue)

    async def keys_needed(algorithms: Sequence[str]) -> None:
        if await keys.ensure_keys(db, algorithms, clock()):
            await reload_keys()

    _background(stack, _every(keys.KEY_RELOAD_SECONDS, reload_keys, rotated))
    return keys_needed


async def _load_keys(config: Config, db: Database, signer: Signer, clock: Clock, catalogue: Catalogue) -> None:
    # A server that has not reloaded yet may sign with a key for one interval after it is
    # retired: keep it published that much longer than the tokens' lifetime.
    now = clock()

    def published(conn: Connection) -> list[SigningKey]:
        oidc = (config.oidc.access_ttl, config.oidc.id_token_ttl) if catalogue.provider_on(conn) else ()
        return keys.published(conn, now, max((config.jwt.access_ttl, *oidc)) + 2 * keys.KEY_RELOAD_SECONDS)

    signer.use_keys(await db.read(published))


async def _every(seconds: float, job: Callable[[], Awaitable[None]], sooner: asyncio.Event | None = None) -> None:
    """Run `job` every `seconds`, or as soon as `sooner` is set."""
    while True:
        if sooner is None:
            await asyncio.sleep(seconds)
        else:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that
            # arrives as the event is set (a NOTIFY at shutdown), and the app never stopped.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await sooner.wait()
            sooner.clear()
        try:
            await job()
        except Exception:
            logger.exception("background_job_failed")


def _middleware(
    config: Config, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], metrics: Metrics
) -> list[Middleware]:
    hsts = config.server.public_url.startswith("https://")
    stack = [Middleware(RequestContext, hsts=hsts, trusted_proxies=trusted, metrics=metrics)]
    if config.cors.allow_all or config.cors.allowed_origins:
        stack.append(
            Middleware(
                Cors,
                allow_origins=["*"] if config.cors.allow_all else list(config.cors.allowed_origins),
                allow_credentials=not config.cors.allow_all,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id", "retry-after"],
                max_age=600,
            )
        )
    stack.append(Middleware(BodyLimit, max_bytes=config.server.max_body_bytes))
    return stack
