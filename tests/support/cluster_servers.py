"""Several real `passwordless serve` processes on one PostgreSQL database (SCALE.md, "What holds
with several servers on one PostgreSQL database"), as a load balancer would see them: every server
has the same `public_url` (the balancer's address, so the tokens' `iss`, the links and the passkey
origin are the same whichever server answers), the same `jwt.secret`, the same database URL and
the same SMTP server; each has a folder of its own and listens on a port of its own.

The servers run this checkout's code (`python -m passwordless` with PYTHONPATH set to it), so a
worktree tests its own changes. `Fleet.cli` runs the other commands (`migrate`, `prune`, `keys`)
against the same database."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.engine import SHARED_SECRET, connect
from tests.support.live import LiveServer
from tests.support.mail import Sink, text_of
from tests.support.processes import clean_env, free_port
from tests.support.signin import token_and_code
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose code the servers run
PUBLIC_URL = "http://localhost:3000"  # the load balancer in front of every server
ADMIN_TOKEN = "multi-server-admin-token-0123456789abcdef"
_RUNS = itertools.count(1)

# Short retries, so a failed send is tried again within the test; a short lease, so rows a killed
# server leased are retaken soon.
EMAIL_KEYS = {
    "from": '"passwordless <auth@mail.example.test>"', "retry_initial": '"200ms"', "retry_max": '"1s"',
    "lease": '"2s"', "max_attempts": "100",
}


def environment(**extra: str) -> dict[str, str]:
    """A clean environment for a server or a command: this checkout's code, the shared secret."""
    return clean_env(PYTHONPATH=str(ROOT), JWT_SECRET=SHARED_SECRET, **extra)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "passwordless", *args]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        """The error code of an error answer."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code"))
        return None


def call(
    server: LiveServer, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None,
) -> Answer:
    """One JSON request to one server (Bearer `token`, if given): status, JSON body, headers."""
    headers = {"content-type": "application/json", "user-agent": "multi-server-tests"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            raw = response.read()
            status, answer_headers = response.status, response.headers
    except urllib.error.HTTPError as exc:
        raw, status, answer_headers = exc.read(), exc.code, exc.headers
    parsed = json.loads(raw) if raw else None
    return Answer(status, parsed, {k.lower(): v for k, v in answer_headers.items()})


class RecordingSink(Sink):
    """The SMTP sink, also noting the recipient of every DATA as it starts (`started`), before
    its optional `delay`: what a server had handed over when it was killed."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.started: list[str] = []
        self.port = 0  # where it listens, once started

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.started.extend(str(r) for r in envelope.rcpt_tos)
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)

    def all_to(self) -> list[str]:
        with self.lock:
            return [str(m["To"]) for m in self.received]


def wait_for_mail(sink: Sink, address: str, count: int = 1, timeout: float = 15) -> list[EmailMessage]:
    """The first `count` emails the sink received for `address`."""
    def enough() -> list[EmailMessage]:
        found = sink.to(address)
        return found if len(found) >= count else []

    return wait_until(enough, f"{count} email(s) to {address}", timeout, every=0.02)


def link_and_code(sink: Sink, address: str, nth: int = 1) -> tuple[str, str]:
    """(token, code) of the nth sign-in email to `address`."""
    return token_and_code(text_of(wait_for_mail(sink, address, nth)[nth - 1]))


@dataclass
class Fleet:
    """Servers sharing one database (`url`) and one SMTP server (`smtp_port`). Each `start` gives
    servers a folder of their own under `folder`; `close` stops them all."""

    folder: Path
    url: str
    smtp_port: int
    extra: str = ""  # whole TOML sections added to every server's configuration
    email: dict[str, str] = field(default_factory=dict)  # [email] keys replacing EMAIL_KEYS
    servers: list[LiveServer] = field(default_factory=list)

    def config(self, name: str, port: int) -> Path:
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        keys = {**EMAIL_KEYS, **self.email}
        path = folder / "config.toml"
        path.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {port}\npublic_url = "{PUBLIC_URL}"\ndrain_delay = "100ms"\n'
            f'[database]\npath = "{folder / "auth.db"}"\nurl = "{self.url}"\n'
            '[email]\ntransport = "smtp"\n'
            + "".join(f"{k} = {v}\n" for k, v in keys.items())
            + f'[email.smtp]\nhost = "127.0.0.1"\nport = {self.smtp_port}\nsecurity = "none"\ntimeout = "3s"\n'
            + f'[admin]\ntoken = "{ADMIN_TOKEN}"\n'
            + self.extra,
            encoding="utf-8",
        )
        return path

    def start(self, count: int = 3, wait: bool = True) -> list[LiveServer]:
        """Start `count` servers at the same moment; with `wait`, return once all are ready."""
        started = []
        for _ in range(count):
            port = free_port()
            path = self.config(f"server-{len(self.servers) + 1}", port)
            server = LiveServer(command("serve", "--config", str(path)), path.parent, port, environment())
            server.public_url, server.db_url = PUBLIC_URL, self.url
            self.servers.append(server)
            started.append(server)
        if wait:
            ready_together(started)
        return started

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`passwordless ARGS --config C` with a configuration of this fleet's (same database)."""
        path = self.config(f"cli-{next(_RUNS)}", free_port())  # a file of its own: commands may run at once
        return subprocess.run(
            command(*args, "--config", str(path)), cwd=path.parent, env=environment(),
            capture_output=True, text=True, timeout=60,
        )

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with connect(self.folder / "unused.db", self.url) as conn:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]

    def metric(self, server: LiveServer, name: str, labels: str) -> float:
        """One sample of a server's /metrics (0 when absent), e.g. ('email_deliveries_total', 'result="sent"')."""
        with urllib.request.urlopen(server.base + "/metrics", timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.split()[-1])
        return 0.0

    def close(self) -> None:
        for server in self.servers:
            server.close()


def ready_together(servers: list[LiveServer]) -> None:
    """Wait for every server at once (they start side by side, each in its own thread of waiting)."""
    failures: list[BaseException] = []

    def wait(server: LiveServer) -> None:
        try:
            server.wait_ready(timeout=40)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=wait, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


@contextmanager
def fleet(folder: Path, url: str, smtp_port: int, count: int = 3, extra: str = "",
          email: dict[str, str] | None = None) -> Iterator[Fleet]:
    """`count` servers ready on one database until the block ends."""
    made = Fleet(folder, url, smtp_port, extra, email or {})
    try:
        if count:
            made.start(count)
        yield made
    finally:
        made.close()


@dataclass(frozen=True)
class Hook:
    """One webhook delivery as received."""

    id: str
    type: str
    email: str


class Receiver:
    """An HTTP server on 127.0.0.1 that answers 200 to every POST and keeps what it was sent."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.hits: list[Hook] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                with receiver.lock:
                    receiver.hits.append(Hook(str(self.headers["webhook-id"]), body["type"], body["data"]["email"]))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def received(self) -> list[Hook]:
        with self.lock:
            return list(self.hits)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
