"""Reading what the server sent: the .eml files of the file transport, and a real SMTP server
(aiosmtpd on 127.0.0.1) that keeps what it receives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.helpers import free_port


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "no text/plain part"
    return str(part.get_content())


def outbox(folder: Path, to: str | None = None) -> list[EmailMessage]:
    """The emails written to a file-transport folder (to one address, if given), oldest first."""
    files = sorted(folder.glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name)) if folder.is_dir() else []
    messages = [parse(p.read_bytes()) for p in files]
    return [m for m in messages if to is None or m["To"] == to]


async def wait_for_outbox(folder: Path, to: str, count: int, timeout: float = 10.0) -> list[EmailMessage]:
    """Wait (without blocking the event loop the mail worker runs on) until `count` emails to
    `to` are in the folder; returns them, oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        found = outbox(folder, to)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} email(s) to {to} in {folder}, found {len(found)}")
        await asyncio.sleep(0.01)


@dataclass
class Sink:
    """An SMTP server on 127.0.0.1 that keeps every message. `answers` are SMTP replies to give
    to the next DATA commands instead of accepting (e.g. "451 try later", "550 no such user")."""

    answers: list[str] = field(default_factory=list)
    received: list[EmailMessage] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.answers:
                return self.answers.pop(0)
            assert isinstance(envelope.content, bytes)
            self.received.append(parse(envelope.content))
        return "250 OK"

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.received if m["To"] == address]


def start_sink(sink: Sink, port: int | None = None, **controller_options: object) -> Controller:
    controller = Controller(sink, hostname="127.0.0.1", port=port or free_port(), **controller_options)
    controller.start()
    return controller
