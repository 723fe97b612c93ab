"""How email leaves the process. Transports raise TemporaryFailure (try again later) or
PermanentFailure (never retry)."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from passwordless.mail.queue import QueuedEmail


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


class Transport(Protocol):
    async def send(self, email: QueuedEmail) -> None: ...


class ConsoleTransport:
    """Development: prints each email, so the sign-in link can be clicked from the terminal."""

    def __init__(self, sender: str, stream: TextIO | None = None) -> None:
        self.sender = sender
        self.stream = stream or sys.stdout

    async def send(self, email: QueuedEmail) -> None:
        rule = "-" * 72
        self.stream.write(
            f"\n{rule}\nFrom: {self.sender}\nTo: {email.to}\nSubject: {email.subject}\n\n{email.text.rstrip()}\n{rule}\n"
        )
        self.stream.flush()
