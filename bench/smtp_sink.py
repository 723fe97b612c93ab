"""An SMTP sink for the benchmarks, in its own process as a real mail server would be: an
aiosmtpd server on 127.0.0.1 that answers 250 to every message and counts them.

    python bench/smtp_sink.py

prints `port N` once it listens, then answers each line it reads on stdin: `count` prints
`MESSAGES BYTES` received so far. It exits when stdin closes (so it never outlives the
benchmark that started it)."""

from __future__ import annotations

import asyncio
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session


class Counter:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages += 1
        self.bytes += len(envelope.original_content or envelope.content or b"")
        return "250 OK"


async def main() -> None:
    counter = Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(counter, hostname="sink.localhost"), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"count":
            print(f"{counter.messages} {counter.bytes}", flush=True)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
