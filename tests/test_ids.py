"""Row ids: UUIDv7, which pagination relies on being time-ordered."""

from __future__ import annotations

import time
import uuid

from passwordless.crypto import new_id


def test_ids_are_uuid_version_7_and_unique() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical lower-case form
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_carry_their_millisecond_and_sort_by_time() -> None:
    before = time.time_ns() // 1_000_000
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    after = time.time_ns() // 1_000_000
    assert first < second
    assert before <= uuid.UUID(first).int >> 80 <= after
