"""`passwordless serve` under test: its production config, start-up, environment, email queue,
/metrics counts, access tokens and log findings."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import prepare
from engines import Db, SqliteDb
from harness import DRAIN_TIMEOUT, ROOT, BenchError, Children, call, free_port, wait_ready

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests.support
from tests.support.processes import clean_env  # noqa: E402

PUBLIC_URL = "https://auth.bench.test"  # production refuses http; the server still listens on http
ORIGIN = PUBLIC_URL  # webauthn.origins defaults to [public_url]
MAGIC_LINK_TTL = 15 * 60  # the config's default, used for prepared tickets too
REFRESH_TTL = 30 * 24 * 3600
# Rate limits with the default windows and counts no run comes near: the limiter's code still runs.
HUGE_RATE_PER_IP = "1000000000/1m"
HUGE_RATE_PER_EMAIL = "1000000000/15m"

# --- the server under test ---------------------------------------------------------------------


def write_config(folder: Path, port: int, sink_port: int, secret: str, db: Db) -> Path:
    """A production configuration: everything production checks is set as it would be."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(
        f"""environment = "production"

[server]
host = "127.0.0.1"
port = {port}
public_url = "{PUBLIC_URL}"

[database]
{db.config()}

[jwt]
secret = "{secret}"

[auth]
allow_signup = true

[email]
transport = "smtp"
from = "Bench <auth@bench.test>"

[email.smtp]
host = "127.0.0.1"
port = {sink_port}
security = "none"

[rate_limit]
enabled = true
magic_link_per_email = "{HUGE_RATE_PER_EMAIL}"
magic_link_per_ip = "{HUGE_RATE_PER_IP}"
verify_per_ip = "{HUGE_RATE_PER_IP}"
passkey_per_ip = "{HUGE_RATE_PER_IP}"
"""
    )
    return path


# Why not tests/support/live.py's LiveServer (the tests' one harness for `passwordless serve`):
# it shares the environment (clean_env) but not the process. The bench's server logs every request
# to a file, where LiveServer pumps output through Python threads that would share the two cores
# with the load being measured; it is one of the bench's Children (stopped in order with SIGINT,
# killed by process group, sampled for RSS by PID); and readiness is polled every 5 ms because
# the time to it is a measured figure.
@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    folder: Path
    secret: str
    log: Path
    db: Db


def server_env() -> dict[str, str]:
    """serve's environment: no settings from ours, and this repository's code first on its path
    (a venv's console script would otherwise import whichever tree the venv was installed from)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env: dict[str, str] = clean_env(PYTHONPATH=path)
    return env


def start_serve(
    children: Children, command: list[str], folder: Path, sink_port: int, db: Db | None = None, secret: str = ""
) -> tuple[Server, float]:
    """`command serve` (command: the program and any arguments before `serve`, a taskset prefix
    included) with a fresh production config in `folder` (on `db`: by default a SQLite
    file in `folder`; servers sharing a database must share `secret`); the server and its time to
    readiness (spawn to the first /readiness 200)."""
    port, secret = free_port(), secret or secrets.token_urlsafe(32)
    store: Db = db if db is not None else SqliteDb(folder / "auth.db")
    config = write_config(folder, port, sink_port, secret, store)
    log = folder / "serve.log"
    with log.open("ab") as out:
        started = time.perf_counter()
        process = children.start(
            [*command, "serve", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=server_env()
        )
    server = Server(process, port, folder, secret, log, store)
    try:
        wait_ready(process, port, "/readiness", log)
    except BaseException:
        children.stop(process)
        raise
    return server, time.perf_counter() - started


def mail_backlog(db: Db) -> int:
    """Emails the server has yet to deliver (pending or being sent)."""
    return int(db.query("SELECT count(*) FROM email_queue WHERE status IN ('pending', 'sending')")[0][0])


def mail_statuses(db: Db) -> dict[str, int]:
    return {s: int(n) for s, n in db.query("SELECT status, count(*) FROM email_queue GROUP BY status")}


def drain_mail(server: Server) -> tuple[int, float]:
    """Wait until the server has delivered every queued email, so one run's email backlog never
    slows the next run; (emails that were waiting, seconds it took)."""
    waiting, started = mail_backlog(server.db), time.perf_counter()
    while mail_backlog(server.db) and time.perf_counter() - started < DRAIN_TIMEOUT:
        time.sleep(0.2)
    return waiting, time.perf_counter() - started


METRIC = re.compile(r'^http_requests_total\{method="(\w+)",route="([^"]*)",status="(\d+)"\} ([0-9.e+]+)$', re.MULTILINE)


def status_counts(server: Server) -> dict[tuple[str, str, str], float]:
    """The server's own count of answers by (method, route, status), from /metrics."""
    try:
        status, body = call(server.port, "GET", "/metrics")
    except OSError:
        return {}
    if status != 200:
        return {}
    return {(m, r, s): float(n) for m, r, s, n in METRIC.findall(body.decode())}


def non_2xx(before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]) -> dict[str, int]:
    """Non-2xx answers between two /metrics scrapes, as "METHOD route status" -> count."""
    out = {}
    for key, n in after.items():
        grew = int(n - before.get(key, 0.0))
        if grew and not key[2].startswith("2"):
            out[" ".join(key)] = grew
    return out


def access_token(server: Server) -> str:
    """A fresh access token, by a prepared ticket spent through the real API."""
    (ticket,) = prepare.make_tickets(server.db, server.secret, MAGIC_LINK_TTL, 1, prepare.unique_tag("me"))
    status, body = call(server.port, "POST", "/auth/magic-link/verify", {"token": ticket.token})
    if status != 200:
        raise BenchError(f"signing in for /auth/me answered {status}: {body[:300]!r}")
    return str(json.loads(body)["access_token"])


def log_findings(log: Path) -> list[str]:
    """Warnings and errors the server logged (a benchmark that made it log errors is suspect),
    with the first exception each traceback ended in."""
    if not log.exists():
        return []
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    in_traceback = False
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split(maxsplit=3)
        if line.startswith("Traceback"):
            counts["Traceback"] = counts.get("Traceback", 0) + 1
            in_traceback = True
        elif in_traceback and line and not line[0].isspace() and not line.startswith(("During handling", "The above")):
            in_traceback = False  # the exception's own line ends the traceback
            key = f"Traceback ending in {line.split(':', 1)[0]}"
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, line[:300])
        elif len(parts) >= 3 and parts[1] in ("WARNING", "ERROR", "CRITICAL"):
            key = f"{parts[1]} {parts[2]} {parts[3].split()[0] if len(parts) > 3 else ''}".strip()
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, line[:300])
    return [f"server log: {n} x `{first.get(k, k)}`" for k, n in counts.items()]
