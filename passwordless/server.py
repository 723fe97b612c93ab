"""Run the app under uvicorn, draining on SIGTERM: /readiness answers 503 for
`server.drain_delay` so load balancers stop sending traffic, then in-flight requests finish
and the process exits 0. A second signal, or Ctrl+C, stops at once."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import signal
import socket
import time
from types import FrameType

import uvicorn
from starlette.types import Receive, Scope, Send

from passwordless.app import create_app
from passwordless.config.settings import Config
from passwordless.platform.lifecycle import Lifecycle

GRACEFUL_SHUTDOWN_SECONDS = 10
# An idle kept-alive connection is closed after this long. A reverse proxy that keeps connections
# to passwordless open must close them sooner (nginx: keepalive_timeout 4s in the upstream block).
KEEP_ALIVE_SECONDS = 5

logger = logging.getLogger(__name__)


AT_CAPACITY = (
    b'{"error":{"code":"unavailable","message":"The server is at its connection limit; try again shortly."}}'
)


async def _at_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    """What a request beyond server.max_connections gets: API.md's JSON error shape."""
    headers = [
        (b"content-type", b"application/json"), (b"content-length", str(len(AT_CAPACITY)).encode()),
        (b"retry-after", b"1"), (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": AT_CAPACITY, "more_body": False})


def _answer_json_at_capacity() -> None:
    """uvicorn answers requests over `limit_concurrency` itself, in text/plain, and has no hook for
    it: its HTTP protocols call the `service_unavailable` app they imported, so that name is
    replaced in each of them (a test reads the answer of a real `passwordless serve`)."""
    for name in ("uvicorn.protocols.http.h11_impl", "uvicorn.protocols.http.httptools_impl"):
        try:
            module = importlib.import_module(name)
        except ImportError:  # httptools is optional
            continue
        setattr(module, "service_unavailable", _at_capacity)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_delay: float) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_delay = drain_delay
        self.drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn's own handler this does not re-raise the signal afterwards:
        # a graceful stop exits 0.
        self.lifecycle.draining = True
        if sig == signal.SIGTERM and self.drain_until is None and self.drain_delay > 0:
            self.drain_until = time.monotonic() + self.drain_delay
        elif self.should_exit:
            self.force_exit = True
        else:
            self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything built at start-up (modules, routes, keys, templates) lives as long as the
        # process. Frozen, the collector no longer walks it: a full collection took 18 ms under
        # load, stalling every request in flight; it now takes well under 1 ms.
        gc.collect()
        gc.freeze()
        # uvicorn takes uvloop and httptools when they import and falls back to asyncio and h11
        # otherwise, silently; an operator comparing speed needs to know which ran.
        logger.info("serving", extra={
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "http_parser": "httptools" if "httptools" in self.config.http_protocol_class.__module__ else "h11",
        })

    async def on_tick(self, counter: int) -> bool:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            return True
        return await super().on_tick(counter)


def serve(config: Config) -> int:
    _answer_json_at_capacity()
    lifecycle = Lifecycle()
    server = DrainingServer(
        uvicorn.Config(
            create_app(config, lifecycle),
            host=config.server.host,
            port=config.server.port,
            log_config=None,
            access_log=False,
            proxy_headers=False,  # X-Forwarded-For is judged by server.trusted_proxies instead
            server_header=False,
            lifespan="on",
            ws="none",  # no WebSocket routes: uvicorn need not import a WebSocket library at start
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            limit_concurrency=config.server.max_connections,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        ),
        lifecycle,
        config.server.drain_delay,
    )
    server.run()
    return 0 if server.started else 1
