"""Reading what the server sent: the .eml files of the file transport, and a real SMTP server
(aiosmtpd on 127.0.0.1) that keeps what it receives."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.processes import free_port
from tests.support.waiting import until


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
    def enough() -> list[EmailMessage]:
        found = outbox(folder, to)
        return found if len(found) >= count else []

    return await until(enough, f"{count} email(s) to {to} in {folder}", timeout)


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


class SlowSink(Sink):
    """Takes `delay` seconds to answer DATA; `receiving` is set once a message is coming in."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.receiving = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.receiving.set()
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def start_sink(sink: Sink, port: int | None = None, **controller_options: object) -> Controller:
    controller = Controller(sink, hostname="127.0.0.1", port=port or free_port(), **controller_options)
    controller.start()
    return controller


def write_test_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made now: (cert.pem, key.pem).
    A client trusts it through SSL_CERT_FILE=cert.pem (ssl.create_default_context reads it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "passwordless test SMTP")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def tls_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """For start_sink(..., tls_context=..., require_starttls=True)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context
