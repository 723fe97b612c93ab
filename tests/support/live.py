"""The real `passwordless serve` as a test's server, one harness for every test that starts it:
`serving` writes a configuration (console email, read back from its stdout; default rate limits;
its database in a folder of the test's own), `launched` runs it with the test's own arguments."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support.engine import database_section, database_url, with_shared_secret
from tests.support.processes import EXECUTABLE, clean_env, free_port
from tests.support.waiting import wait_until

RULE = "-" * 72


# ---------------------------------------------------------------------------------------- server


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    link: str
    token: str
    code: str
    text: str


class LiveServer:
    """The real server as a process (`command`, by default `passwordless serve ARGS`) on
    127.0.0.1:`port`, in its own process group; its stdout and stderr are read by threads as they
    come, so a chatty server never blocks on a full pipe. `public_url` is http://HOST:PORT
    (localhost unless asked); `base` the address it listens on."""

    def __init__(
        self, command: list[str], cwd: Path, port: int, env: dict[str, str] | None = None, host: str = "localhost"
    ) -> None:
        self.port, self.db = port, cwd / "auth.db"
        self.db_url: str | None = None  # the PostgreSQL database, when the server runs on one
        self.public_url = f"http://{host}:{port}"
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env if env is not None else clean_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group, so a simulated crash kills all of it
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._threads = [
            threading.Thread(target=_pump, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=_pump, args=(self.process.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.emails_taken = 0
        self.notices: list[str] = []  # the "passkey added" emails met by next_email

    def url(self, path: str) -> str:
        return self.public_url + path

    def logs(self) -> str:
        return "".join(self.err)

    def request(self, method: str, path: str, body: dict[str, object] | None = None) -> tuple[int, Any]:
        """(status, JSON body) of one request to the server."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def request_link(self, address: str) -> None:
        """Ask for a sign-in email to `address` (queued: 202)."""
        status, body = self.request("POST", "/auth/magic-link", {"email": address})
        assert (status, body) == (202, {"status": "sent"}), (status, body)

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, "the server exited:\n" + self.logs()
            try:
                return self.get("/readiness")[0] == 200
            except OSError:
                return False

        try:
            wait_until(ready, "the server to become ready", timeout, every=0.05)
        except AssertionError as exc:  # with what it logged by then
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def next_email(self, timeout: float = 10) -> Email:
        """The next sign-in email printed on stdout (the worker sends at once, so this waits
        briefly); notices met on the way are kept in `notices`."""
        try:
            email = wait_until(self._take_email, "an email on stdout", timeout, every=0.02)
        except AssertionError:
            raise AssertionError("no email was printed:\n" + "".join(self.out) + self.logs()) from None
        assert email is not None
        return email

    def _take_email(self) -> Email | None:
        blocks = re.findall(rf"^{RULE}\n(From: .*?)\n{RULE}$", "".join(self.out), re.S | re.M)
        while len(blocks) > self.emails_taken:
            self.emails_taken += 1
            block = blocks[self.emails_taken - 1]
            if re.search(r"^Subject: A passkey was added", block, re.M):
                self.notices.append(block)  # a notice, not a sign-in email: kept aside
                continue
            return _parse_email(block)
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> str:
        """Signal the server, wait for it to exit, and return what it logged."""
        if self.process.poll() is None:
            if sig == signal.SIGKILL:  # a crash kills every process of the server (the executable has two)
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
        self.process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return self.logs()

    def terminate(self, timeout: float = 15) -> float:
        """SIGTERM, then wait for the exit; the seconds it took."""
        started = time.monotonic()
        self.stop(signal.SIGTERM, timeout)
        return time.monotonic() - started

    def close(self) -> None:
        """Whatever a test left: SIGTERM (a SIGKILLed executable launcher would leave its child
        running), SIGKILL only if that fails."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except ValueError:  # closed by its reader thread at the same moment
                    pass


def _pump(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)
    stream.close()


def _parse_email(block: str) -> Email:
    to = re.search(r"^To: (.+)$", block, re.M)
    subject = re.search(r"^Subject: (.+)$", block, re.M)
    link = re.search(r"^(\S+\?token=([A-Za-z0-9_-]+))$", block, re.M)
    code = re.search(r"code: ([0-9]{6})\b", block)
    assert to and subject and link and code, block
    return Email(to.group(1), subject.group(1), link.group(1), link.group(2), code.group(1), block)


@contextmanager
def serving(
    tmp_path: Path, extra_config: str = "", host: str = "localhost", env: dict[str, str] | None = None,
    executable: str = EXECUTABLE, email: str = 'transport = "console"\n',
) -> Iterator[LiveServer]:
    """Runs the real server (console email, default rate limits, its database in tmp_path) until
    the block ends. `extra_config` is TOML appended to the configuration: whole sections other
    than [server], [database] and [email], e.g. '[ui]\nproduct_name = "Acme"\n'; `email` is the
    body of [email]; `executable` the `passwordless` command to run (by default the one under test)."""
    port = free_port()
    config = tmp_path / "config.toml"
    database = database_section(tmp_path)
    config.write_text(
        "[server]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'public_url = "http://{host}:{port}"\n'
        'drain_delay = "200ms"\n'
        + database
        + "[email]\n" + email + with_shared_secret(extra_config),
        encoding="utf-8",
    )
    environment = clean_env(**(env or {}))
    server = LiveServer([executable, "serve", "--config", str(config)], tmp_path, port, environment, host)
    server.db_url = database_url(database)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


@contextmanager
def launched(
    cwd: Path, *args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
) -> Iterator[LiveServer]:
    """`passwordless serve --port FREE ARGS` in `cwd` as the test left it (no configuration is
    written; `env`, if given, is the whole environment), ready, until the block ends. `prefix`
    runs it under another command (a shell that sets the umask first, say)."""
    port = free_port()
    server = LiveServer([*prefix, EXECUTABLE, "serve", "--port", str(port), *args], cwd, port, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The real server: console email, default rate limits, its database in tmp_path."""
    with serving(tmp_path) as server:
        yield server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[str], LiveServer]]:
    """Starts real servers with extra configuration (see `serving`); each in its own folder
    under tmp_path, all stopped when the test ends."""
    with ExitStack() as stack:
        started = 0

        def start(extra_config: str = "") -> LiveServer:
            nonlocal started
            started += 1
            folder = tmp_path / f"server-{started}"
            folder.mkdir()
            return stack.enter_context(serving(folder, extra_config))

        yield start


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Starts `passwordless serve ARGS` in tmp_path (see `launched`); all stopped when the test ends."""
    with ExitStack() as stack:

        def start(*args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> LiveServer:
            return stack.enter_context(launched(tmp_path, *args, env=env, prefix=prefix))

        yield start
