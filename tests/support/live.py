"""The real `passwordless serve` as a test's server: console email (read back from its stdout),
default rate limits, its database and config in a folder of the test's own."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from tests.support.processes import EXECUTABLE, clean_env, free_port

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
    """A `passwordless serve` process (console email transport) whose stdout and stderr are read
    by threads as they come; `public_url` is http://HOST:PORT (localhost unless asked)."""

    def __init__(self, process: subprocess.Popen[str], port: int, db: Path, host: str = "localhost") -> None:
        self.process, self.port, self.db = process, port, db
        self.public_url = f"http://{host}:{port}"
        self.out: list[str] = []
        self.err: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._threads = [
            threading.Thread(target=_pump, args=(process.stdout, self.out), daemon=True),
            threading.Thread(target=_pump, args=(process.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.emails_taken = 0
        self.notices: list[str] = []  # the "passkey added" emails met by next_email

    def url(self, path: str) -> str:
        return self.public_url + path

    def logs(self) -> str:
        return "".join(self.err)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server exited:\n" + self.logs()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readiness", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError("the server did not become ready:\n" + self.logs())

    def next_email(self, timeout: float = 10) -> Email:
        """The next sign-in email printed on stdout (the worker sends at once, so this waits
        briefly); notices met on the way are kept in `notices`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            blocks = re.findall(rf"^{RULE}\n(From: .*?)\n{RULE}$", "".join(self.out), re.S | re.M)
            while len(blocks) > self.emails_taken:
                self.emails_taken += 1
                block = blocks[self.emails_taken - 1]
                if re.search(r"^Subject: A passkey was added", block, re.M):
                    self.notices.append(block)  # a notice, not a sign-in email: kept aside
                    continue
                return _parse_email(block)
            time.sleep(0.02)
        raise AssertionError("no email was printed:\n" + "".join(self.out) + self.logs())

    def terminate(self, timeout: float = 15) -> float:
        """SIGTERM, then wait for the exit; the seconds it took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        elapsed = time.monotonic() - started
        for thread in self._threads:
            thread.join(timeout=5)
        return elapsed


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
    db = tmp_path / "auth.db"
    config = tmp_path / "config.toml"
    config.write_text(
        "[server]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'public_url = "http://{host}:{port}"\n'
        'drain_delay = "200ms"\n'
        "[database]\n"
        f'path = "{db}"\n'
        "[email]\n" + email + extra_config,
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [executable, "serve", "--config", str(config)],
        cwd=tmp_path, env=clean_env(**(env or {})), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    server = LiveServer(process, port, db, host)
    try:
        server.wait_ready()
        yield server
    finally:
        if process.poll() is None:  # SIGTERM: a SIGKILLed executable launcher leaves its child running
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except ValueError:  # closed by its reader thread at the same moment
                    pass


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
