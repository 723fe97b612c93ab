"""The bare baseline for bench/run.py: one Starlette route under uvicorn, run exactly as the
server is run (one process, uvicorn's default loop and HTTP implementation), so the ratio
flow/bare shows what the server's own work costs on this machine.

    .venv/bin/python bench/bare_app.py --port N
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(routes=[Route("/", ok, methods=["GET"])])


def main() -> None:
    parser = argparse.ArgumentParser(description="The bare Starlette baseline of bench/run.py.")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
