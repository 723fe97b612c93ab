"""Start a server under test on a chosen uvicorn stack, and say from inside it which one ran.

    python bench/stack.py standard|pure serve --config FILE     (passwordless.cli's main)
    python bench/stack.py standard|pure bare --port N           (bench/bare_app.py's main)

- standard: as installed; uvicorn picks uvloop and httptools when they import (uvicorn[standard]).
- pure: `import uvloop` and `import httptools` fail in this process (a None in sys.modules is
  what Python itself treats as "not importable"), so uvicorn falls back to asyncio's own loop and
  h11: the product runs unchanged, only the two modules are out of its reach.

Either way, once uvicorn has started, one line goes to stdout (the server's log):

    BENCHSTACK loop=uvloop.Loop http=uvicorn.protocols.http.httptools_impl.HttpToolsProtocol

read back by `stack_of`: the stack reported is the one that ran, not the one asked for.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

STACKS = ("standard", "pure")
LINE = re.compile(r"^BENCHSTACK loop=(\S+) http=(\S+)$", re.MULTILINE)


def stack_of(log: Path) -> str:
    """The loop and HTTP parser a server's log says it ran on, shortly ("uvloop + httptools")."""
    match = LINE.search(log.read_text(errors="replace")) if log.exists() else None
    if match is None:
        return "unknown (no BENCHSTACK line in its log)"
    loop = "uvloop" if match.group(1).startswith("uvloop") else f"asyncio ({match.group(1).rsplit('.', 1)[-1]})"
    http = {"HttpToolsProtocol": "httptools", "H11Protocol": "h11"}.get(match.group(2).rsplit(".", 1)[-1],
                                                                        match.group(2))
    return f"{loop} + {http}"


def is_expected(stack: str, seen: str) -> bool:
    """Whether what a server reported (stack_of) is the stack it was started on."""
    return seen == "uvloop + httptools" if stack == "standard" else seen.startswith("asyncio") and seen.endswith("h11")


def report_stack_at_startup() -> None:
    import uvicorn.server

    original = uvicorn.server.Server.startup

    async def startup(self: Any, sockets: Any = None) -> None:
        await original(self, sockets)
        loop = type(asyncio.get_running_loop())
        http = self.config.http_protocol_class
        print(f"BENCHSTACK loop={loop.__module__}.{loop.__qualname__} http={http.__module__}.{http.__qualname__}",
              flush=True)

    uvicorn.server.Server.startup = startup  # type: ignore[method-assign]


def main() -> int:
    stack, program, *rest = sys.argv[1:]
    if stack not in STACKS or program not in ("serve", "bare"):
        raise SystemExit(__doc__)
    if stack == "pure":
        sys.modules["uvloop"] = None  # type: ignore[assignment]
        sys.modules["httptools"] = None  # type: ignore[assignment]
    report_stack_at_startup()
    if program == "bare":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bare_app

        sys.argv = ["bare_app.py", *rest]
        bare_app.main()
        return 0
    from passwordless.cli import main as cli_main

    return cli_main(["serve", *rest])


if __name__ == "__main__":
    sys.exit(main())
