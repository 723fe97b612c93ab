"""End to end: the real `passwordless serve` process, over HTTP."""

from __future__ import annotations

import json
import os
import signal
import stat
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.processes import clean_env, cli
from tests.support.waiting import wait_until


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sigterm_turns_readiness_503_then_exits_cleanly(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path, '[server]\ndrain_delay = "2s"\n[database]\npath = "db/auth.db"\n')
    server = launch("--config", str(config))
    status, body = server.get("/health")
    assert status == 200 and body["status"] == "healthy"
    env = clean_env(PORT=str(server.port))
    assert cli("healthcheck", "--config", str(config), cwd=tmp_path, env=env).returncode == 0

    server.process.send_signal(signal.SIGTERM)
    # The signal takes a moment to arrive (the executable's launcher passes it on): well inside
    # the 2 s of draining, readiness answers 503 while the server still serves.
    status, body = wait_until(lambda: (got := server.get("/readiness"))[0] == 503 and got, "readiness 503", 1.5)
    assert body == {"status": "not_ready", "reason": "draining"}
    assert server.get("/liveness")[0] == 200  # still serving in-flight traffic while draining
    assert cli("healthcheck", "--config", str(config), cwd=tmp_path, env=env).returncode == 1

    logs = server.stop()
    assert server.process.returncode == 0, logs
    assert "stopped" in logs
    assert (tmp_path / "db" / "auth.db").exists()


def test_no_config_at_all_runs_on_development_defaults(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = launch()
    status, body = server.get("/health")
    assert status == 200 and body["checks"] == {"database": "ok", "email_queue": "ok"}
    assert (tmp_path / "data" / "auth.db").is_file()
    secret = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    logs = server.stop(signal.SIGINT)  # Ctrl+C stops at once, still cleanly
    assert server.process.returncode == 0, logs
    assert "dev_secret_generated" in logs and "WARNING" in logs
    assert secret.read_text().strip() not in logs


def test_json_logs_are_one_object_per_line_without_tokens(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = launch(env=clean_env(LOG_FORMAT="json", DRAIN_DELAY="100ms"))
    request = urllib.request.Request(
        server.base + "/readiness?token=SEKRET-TOKEN", headers={"X-Request-ID": "req-abc.123"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["X-Request-ID"] == "req-abc.123"
    logs = server.stop()
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("request_id") == "req-abc.123"]
    assert mine and mine[0]["logger"] == "passwordless.access"
    assert {"path": "/readiness", "status": 200, "method": "GET"}.items() <= mine[0].items()
    assert "SEKRET-TOKEN" not in logs
    # The production stack (pyproject's uvicorn[standard], the executable's bundle) is what runs.
    serving = [line for line in lines if line["message"] == "serving"]
    assert serving and {"event_loop": "uvloop", "http_parser": "httptools"}.items() <= serving[0].items()


def test_a_port_in_use_stops_start_up(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = launch()
    again = cli("serve", "--port", str(server.port), "--host", "127.0.0.1", cwd=tmp_path)
    assert again.returncode != 0
    assert "address already in use" in again.stderr.lower()
    assert os.path.exists(tmp_path / "data" / "auth.db")


def test_max_connections_turns_away_slow_clients_beyond_the_limit(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Half-sent requests hold a connection (uvicorn has no header timeout: that is the reverse
    proxy's job); server.max_connections bounds how many, so they cannot exhaust the process."""
    import socket

    config = write_config(tmp_path, "[server]\nmax_connections = 5\n")
    server = launch("--config", str(config))
    slow: list[socket.socket] = []

    def half_sent() -> None:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET /liveness HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
        slow.append(sock)

    def liveness() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(server.base + "/liveness", timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    try:
        for _ in range(3):
            half_sent()
        assert liveness()[0] == 200  # within the limit (3 held + this one) the server answers
        for _ in range(3):
            half_sent()
        status, body = liveness()
        assert status == 503
        assert json.loads(body)["error"]["code"] == "unavailable"  # API.md's shape, not uvicorn's text
    finally:
        for sock in slow:
            sock.close()
    # The slots come back once the slow clients go.
    wait_until(lambda: liveness()[0] == 200, "a free connection slot", timeout=20, every=0.05)
