"""Row ids (UUIDv7, which pagination relies on being time-ordered) and the random values behind
tokens, codes and ids."""

from __future__ import annotations

import os
import threading
import time
import uuid

from passwordless.platform.crypto import new_code, new_id, new_token, random_bytes


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


def test_random_values_never_repeat_across_pool_refills_threads_and_forks() -> None:
    tokens = [new_token() for _ in range(1000)]  # 32 KB: several refills of the pool
    assert len(set(tokens)) == 1000 and all(len(t) == 43 for t in tokens)
    codes = [new_code() for _ in range(2000)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(set(codes)) > 1500  # a million values: 2,000 draws repeat a few at most

    from_threads: list[bytes] = []
    workers = [threading.Thread(target=lambda: from_threads.append(random_bytes(16))) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    mine = random_bytes(16)
    assert len(set(from_threads + [mine])) == 9

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it draws must differ from what the parent draws next
        os.write(write, random_bytes(16))
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) != random_bytes(16)
    os.close(read)
    os.close(write)
