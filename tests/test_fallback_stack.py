"""uvicorn's pure-Python fallback: where uvloop or httptools cannot be installed (a platform with no
wheel), `passwordless serve` runs on asyncio and h11 and still signs people in, and says which stack
it runs on (the production stack's own check is in tests/test_serve.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support.live import LiveServer
from tests.support.processes import clean_env, free_port

# The installed package, with uvloop and httptools made unimportable (as if never installed).
WITHOUT_THEM = (
    "import sys; sys.modules['uvloop'] = None; sys.modules['httptools'] = None; "
    "from passwordless.cli import main; sys.exit(main())"
)


def test_without_uvloop_and_httptools_the_server_signs_people_in(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", WITHOUT_THEM, "serve", "--port", str(port)]
    server = LiveServer(command, tmp_path, port, clean_env(LOG_FORMAT="json", DRAIN_DELAY="100ms"))
    try:
        server.wait_ready()
        server.request_link("fallback@example.com")
        email = server.next_email()
        status, body = server.request("POST", "/auth/code/verify", {"email": "fallback@example.com", "code": email.code})
        assert status == 200 and body["user"]["email"] == "fallback@example.com"
    finally:
        logs = server.stop()
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
    serving = [line for line in lines if line["message"] == "serving"]
    assert serving and {"event_loop": "asyncio", "http_parser": "h11"}.items() <= serving[0].items()
