"""How email leaves the process: SMTP (connections kept open and reused), a folder of .eml
files, or the console. A transport raises TemporaryFailure (try again later) or
PermanentFailure (never retry); `send` returns the receiving server's answer."""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Protocol, TextIO

import aiosmtplib

from passwordless.config.settings import EmailSettings
from passwordless.mail.queue import QueuedEmail
from passwordless.platform import private_files
from passwordless.platform.queues.worker import describe


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


class Transport(Protocol):
    async def send(self, email: QueuedEmail) -> str: ...

    async def close(self) -> None: ...


def build_message(sender: str, email: QueuedEmail) -> bytes:
    """A multipart/alternative text + HTML message with Date and a Message-ID of the sender's
    domain, as the bytes that go on the wire. Written directly rather than through the email
    package's classes (fifteen times cheaper, which shows when thousands of sign-in emails go
    out). The boundary holds "=_", which neither base64 nor the 7bit bodies here can hold.
    A non-ASCII address stays as it is, in UTF-8 (RFC 6532): it goes out with SMTPUTF8."""
    from_header, domain = _sender(sender)
    boundary = f"=_{email.id}"
    head = (
        f"From: {from_header}\n"
        f"To: {_address(email.to)}\n"
        f"Subject: {_header(email.subject)}\n"
        f"Date: {_date(int(time.time()))}\n"
        f"Message-ID: <{email.id}@{domain}>\n"  # the queue row's id: unique, and short enough not to fold
        "Auto-Submitted: auto-generated\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
    )
    parts = [head.encode("utf-8"), _part(boundary, "plain", email.text)]
    if email.html:
        parts.append(_part(boundary, "html", email.html))
    parts.append(f"--{boundary}--\n".encode("ascii"))
    return b"".join(parts)


def _part(boundary: str, subtype: str, body: str) -> bytes:
    """ASCII text with short lines goes as it is (7bit: readable, and nothing to encode);
    anything else as base64."""
    if body.isascii() and "=_" not in body and max(map(len, body.split("\n"))) < 990:
        encoding, payload = "7bit", body.encode("ascii") + b"\n"  # this line break belongs to the boundary
    else:
        encoding, payload = "base64", base64.encodebytes(body.encode("utf-8"))
    head = f'--{boundary}\nContent-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: {encoding}\n\n'
    return head.encode("ascii") + payload


@functools.lru_cache(maxsize=2)
def _date(second: int) -> str:
    """RFC 5322's numeric zone ("+0000"), not the obsolete "GMT"."""
    return format_datetime(datetime.fromtimestamp(second, timezone.utc))


@functools.lru_cache(maxsize=8)
def _sender(sender: str) -> tuple[str, str]:
    """The From header and the domain for Message-IDs: the same for every email."""
    return _header(sender), parseaddr(sender)[1].rpartition("@")[2] or "localhost"


def _header(value: str) -> str:
    """Header text on one line: line breaks (which would start a new header) become spaces,
    and non-ASCII text becomes RFC 2047 words (a display name may hold any letter)."""
    value = " ".join(value.splitlines())
    if value.isascii():
        return value if len(value) <= 900 else Header(value, "us-ascii").encode()  # folded under 998
    name, address = parseaddr(value)
    if address and "@" in address and value.strip().endswith(">"):
        return formataddr((name, address), charset="utf-8")
    return Header(value, "utf-8").encode()


def _address(value: str) -> str:
    """A recipient address on one line. An encoded word cannot stand for an address, so a
    non-ASCII one (RFC 6531) is kept as UTF-8 rather than passed through _header."""
    value = " ".join(value.splitlines())
    return _header(value) if value.isascii() else value


def needs_smtputf8(*addresses: str) -> bool:
    return not all(address.isascii() for address in addresses)


class ConsoleTransport:
    """Development: prints each email, so the sign-in link can be clicked from the terminal."""

    def __init__(self, sender: str, stream: TextIO | None = None) -> None:
        self.sender = sender
        self.stream = stream or sys.stdout

    async def send(self, email: QueuedEmail) -> str:
        rule = "-" * 72
        text = f"\n{rule}\nFrom: {self.sender}\nTo: {email.to}\nSubject: {email.subject}\n\n{email.text.rstrip()}\n{rule}\n"
        encoding = getattr(self.stream, "encoding", None) or "utf-8"
        # A terminal that cannot show a letter of the address gets it escaped, not a crash.
        self.stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        self.stream.flush()
        return "printed to the console"

    async def close(self) -> None:
        return None


class FileTransport:
    """Staging and tests: writes each email as FOLDER/<id>.eml (complete files only)."""

    def __init__(self, sender: str, folder: Path) -> None:
        self.sender = sender
        self.folder = folder

    async def send(self, email: QueuedEmail) -> str:
        data = build_message(self.sender, email)
        return await asyncio.to_thread(self._write, email.id, data)

    def _write(self, email_id: str, data: bytes) -> str:
        private_files.folder(self.folder)
        final = self.folder / f"{email_id}.eml"
        partial = self.folder / f".{email_id}.eml.partial"
        private_files.write(partial, data)  # an email holds a sign-in link
        os.replace(partial, final)
        return f"written to {final}"

    async def close(self) -> None:
        return None


class SmtpTransport:
    """SMTP through aiosmtplib. Up to `concurrency` connections are opened and reused, so a
    TLS handshake is paid per connection, not per message."""

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self.envelope_from = parseaddr(settings.from_address)[1] or settings.from_address
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def send(self, email: QueuedEmail) -> str:
        message = build_message(self.settings.from_address, email)
        options = ["SMTPUTF8"] if needs_smtputf8(self.envelope_from, email.to) else []
        async with self._connection() as smtp:
            try:
                _, answer = await smtp.sendmail(self.envelope_from, [email.to], message, mail_options=options)
            except aiosmtplib.SMTPServerDisconnected:
                # A kept connection the server has since closed: one more try on a new one.
                await smtp.connect()
                _, answer = await smtp.sendmail(self.envelope_from, [email.to], message, mail_options=options)
            return answer

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        async with self._slots:
            smtp = self._idle.pop() if self._idle else self._new()
            try:
                if not smtp.is_connected:
                    await smtp.connect()
                yield smtp
            except aiosmtplib.SMTPNotSupported as exc:
                # SMTPUTF8 missing: this server will never take the address (RFC 6531 §3.4).
                _keep_or_close(self._idle, smtp)
                raise PermanentFailure(describe(exc)) from None
            except aiosmtplib.SMTPRecipientsRefused as exc:
                _keep_or_close(self._idle, smtp)
                raise _classify(exc.recipients[0]) from None
            except aiosmtplib.SMTPResponseException as exc:
                _keep_or_close(self._idle, smtp)
                raise _classify(exc) from None
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                smtp.close()
                raise TemporaryFailure(describe(exc)) from None
            except BaseException:  # cancelled mid-send (shutdown): the connection is in an unknown state
                smtp.close()
                raise
            else:
                self._idle.append(smtp)

    def _new(self) -> aiosmtplib.SMTP:
        s = self.settings.smtp
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username or None,
            password=s.password or None,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            timeout=s.timeout,
        )

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                await asyncio.wait_for(smtp.quit(), 5)
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                smtp.close()


def _keep_or_close(idle: list[aiosmtplib.SMTP], smtp: aiosmtplib.SMTP) -> None:
    """After a refused message the connection is still good: reset it and keep it."""
    if smtp.is_connected:
        idle.append(smtp)


def _classify(exc: aiosmtplib.SMTPResponseException) -> Exception:
    """5xx refuses for good; 4xx, and a refused login (an operator can fix it), try again."""
    text = f"{exc.code} {exc.message}".strip()
    if 500 <= exc.code < 600 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentFailure(text)
    return TemporaryFailure(text)


def make_transport(settings: EmailSettings) -> Transport:
    if settings.transport == "smtp":
        return SmtpTransport(settings)
    if settings.transport == "file":
        return FileTransport(settings.from_address, Path(settings.file_dir))
    return ConsoleTransport(settings.from_address)
