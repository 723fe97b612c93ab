"""The bytes of a sign-in email, as a mail client reads them: build_message writes MIME by hand,
so these tests parse its output with the standard library's strict parser."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
import time
from email.message import EmailMessage

from passwordless.mail.queue import QueuedEmail
from passwordless.mail.transport import build_message
from passwordless.platform.crypto import new_id

TEXT = "Hello,\n\nSign in: https://auth.example.com/x?token=abc\n.\nFrom the team\nCode: 123456\n"
HTML = '<p>Hello</p>\n<p><a href="https://auth.example.com/x?token=abc">Sign in</a></p>\n'


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def queued(subject: str = "Sign in to Example", text: str = TEXT, html: str = HTML, to: str = "a@example.com") -> QueuedEmail:
    return QueuedEmail(new_id(), to, subject, text, html, 1)


def test_a_message_has_the_headers_and_both_bodies_exactly() -> None:
    item = queued()
    before = time.time()
    message = parse(build_message("Example <auth@mail.example.test>", item))

    assert message["From"] == "Example <auth@mail.example.test>"
    assert message["To"] == "a@example.com"
    assert message["Subject"] == "Sign in to Example"
    assert message["Message-ID"] == f"<{item.id}@mail.example.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["MIME-Version"] == "1.0"
    date = email.utils.parsedate_to_datetime(message["Date"])
    assert date.tzinfo is not None and abs(date.timestamp() - before) < 5
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    assert (text_part.get_content_type(), html_part.get_content_type()) == ("text/plain", "text/html")
    assert text_part.get_content_charset() == html_part.get_content_charset() == "utf-8"
    assert text_part.get_content() == TEXT  # a line holding only "." and one starting "From " survive
    assert html_part.get_content() == HTML
    assert message.defects == [] and text_part.defects == [] and html_part.defects == []


def test_without_html_the_message_has_only_the_text_part() -> None:
    message = parse(build_message("auth@example.com", queued(html="")))
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain"]
    assert message.get_body(preferencelist=("plain",)).get_content() == TEXT  # type: ignore[union-attr]


def test_non_ascii_names_subjects_and_bodies_arrive_intact_in_ascii_headers() -> None:
    data = build_message("Zoë's Café <auth@cafe.example>", queued(subject="Connexion à Zoë — 🔑", text="Bonjour Zoë ✓\n"))
    header_block = data.split(b"\n\n", 1)[0]
    assert header_block.isascii()  # RFC 2047 words, not raw UTF-8
    message = parse(data)
    assert message["Subject"] == "Connexion à Zoë — 🔑"
    assert message["From"].addresses[0].display_name == "Zoë's Café"
    assert message.get_body(preferencelist=("plain",)).get_content() == "Bonjour Zoë ✓\n"  # type: ignore[union-attr]


def test_a_line_break_in_a_subject_cannot_add_a_header() -> None:
    message = parse(build_message("auth@example.com", queued(subject="Hi\r\nBcc: victim@example.com\nX-Evil: 1")))
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "Hi Bcc: victim@example.com X-Evil: 1"


def test_every_line_fits_smtps_limit_even_for_long_bodies_and_subjects() -> None:
    long_subject = " ".join(["word"] * 400)
    data = build_message("auth@example.com", queued(subject=long_subject, text="x" * 5000 + "\n", html="<p>" + "y" * 5000))
    assert max(len(line) for line in data.split(b"\n")) <= 998
    message = parse(data)
    assert message["Subject"] == long_subject
    assert message.get_body(preferencelist=("plain",)).get_content() == "x" * 5000 + "\n"  # type: ignore[union-attr]


def test_each_message_has_its_own_id_and_boundary() -> None:
    first, second = build_message("auth@example.com", queued()), build_message("auth@example.com", queued())
    ids = [parse(data)["Message-ID"] for data in (first, second)]
    assert ids[0] != ids[1]
    boundaries = [re.search(rb'boundary="([^"]+)"', data)[1] for data in (first, second)]  # type: ignore[index]
    assert boundaries[0] != boundaries[1]


def test_plain_ascii_bodies_travel_readable_and_others_encoded() -> None:
    readable = build_message("auth@example.com", queued())
    assert b"Content-Transfer-Encoding: 7bit" in readable and b"token=abc" in readable
    for body in ("no line break at the end", "blank lines at the end\n\n", ".\n..\n"):
        assert parse(build_message("auth@example.com", queued(text=body))).get_body(  # type: ignore[union-attr]
            preferencelist=("plain",)
        ).get_content() == body
    for body in ("Grüße\n", "line " + "x" * 1200 + "\n", "a boundary-like =_ text\n"):
        data = build_message("auth@example.com", queued(text=body))
        assert b"Content-Transfer-Encoding: base64" in data
        assert parse(data).get_body(preferencelist=("plain",)).get_content() == body  # type: ignore[union-attr]
