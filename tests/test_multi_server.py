"""Three real `passwordless serve` processes on one real PostgreSQL database: every point of
SCALE.md's "What holds with several servers on one PostgreSQL database", as a user (or an operator)
would notice it. The servers stand behind an imaginary load balancer (one public_url); a test sends
each request to the server it names (A, B or C) to show any request may land on any server.

These are PostgreSQL tests whatever PASSWORDLESS_TEST_ENGINE says: they take databases from the
suite's throwaway cluster (tests/support/engine.py), or, to stop PostgreSQL, from one of their own."""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from passwordless.keys.service import KEY_RELOAD_SECONDS
from passwordless.platform.migrate import MIGRATION_LOCK
from tests.support.authenticator import SoftAuthenticator
from tests.support.cluster_servers import (
    PUBLIC_URL,
    ROOT,
    Answer,
    Fleet,
    Receiver,
    RecordingSink,
    call,
    command,
    environment,
    fleet,
    link_and_code,
    wait_for_mail,
)
from tests.support.engine import cluster
from tests.support.live import LiveServer
from tests.support.mail import start_sink
from tests.support.postgres import Cluster
from tests.support.signin import other_code
from tests.support.waiting import wait_until

T = TypeVar("T")


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    received = RecordingSink()
    controller = start_sink(received)
    received.port = int(controller.port)
    yield received
    controller.stop()


@pytest.fixture
def three(tmp_path: Path, sink: RecordingSink) -> Iterator[Fleet]:
    """Servers A, B and C on one fresh database."""
    with fleet(tmp_path, cluster().create_database(), sink.port) as made:
        yield made


def together(*calls: Callable[[], T]) -> list[T]:
    """Run the calls at the same moment, each in a thread of its own (a barrier lets them go at once)."""
    barrier = threading.Barrier(len(calls))
    results: list[T | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, fn: Callable[[], T]) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def ask(server: LiveServer, address: str) -> None:
    answer = call(server, "POST", "/auth/magic-link", {"email": address})
    assert (answer.status, answer.body) == (202, {"status": "sent"}), answer


def by_code(server: LiveServer, address: str, code: str) -> Answer:
    return call(server, "POST", "/auth/code/verify", {"email": address, "code": code})


def by_link(server: LiveServer, token: str) -> Answer:
    return call(server, "POST", "/auth/magic-link/verify", {"token": token})


def signed_in(three: Fleet, sink: RecordingSink, address: str, on: int = 0, nth: int = 1) -> Answer:
    """Ask for an email on server `on`, sign in with its code on the next server."""
    a = three.servers[on]
    ask(a, address)
    _, code = link_and_code(sink, address, nth)
    answer = by_code(three.servers[(on + 1) % 3], address, code)
    assert answer.status == 200, answer
    return answer


def assert_refused(answer: Answer, status: int, code: str) -> None:
    assert (answer.status, answer.code) == (status, code), answer


# --- 1. sign-in tickets ---------------------------------------------------------------------------


def test_a_ticket_asked_for_on_a_is_spent_on_b_by_link_and_another_on_c_by_code(
    three: Fleet, sink: RecordingSink
) -> None:
    a, b, c = three.servers
    ask(a, "ada@example.com")
    token, code = link_and_code(sink, "ada@example.com")
    first = by_link(b, token)
    assert first.status == 200, first
    assert first.body["user"]["email"] == "ada@example.com"
    assert_refused(by_code(c, "ada@example.com", code), 401, "invalid_code")  # the same ticket: spent
    assert_refused(by_link(a, token), 401, "invalid_token")

    ask(a, "ada@example.com")
    token2, code2 = link_and_code(sink, "ada@example.com", 2)
    second = by_code(c, "ada@example.com", code2)
    assert second.status == 200, second
    assert second.body["user"]["id"] == first.body["user"]["id"]  # one user, whichever server made it
    assert_refused(by_link(b, token2), 401, "invalid_token")


def test_wrong_codes_sent_to_a_b_and_c_in_turn_burn_the_ticket_together(three: Fleet, sink: RecordingSink) -> None:
    """auth.code_max_attempts is 5 by default: five wrong codes over three servers (no server sees
    more than two) burn the ticket; then the right code, and the link, fail everywhere."""
    a, b, c = three.servers
    ask(a, "ada@example.com")
    token, code = link_and_code(sink, "ada@example.com")
    for step, server in enumerate([a, b, c, a, b], start=1):
        assert_refused(by_code(server, "ada@example.com", other_code(code, step)), 401, "invalid_code")
    for server in (a, b, c):
        assert_refused(by_code(server, "ada@example.com", code), 401, "invalid_code")
    assert_refused(by_link(c, token), 401, "invalid_token")


def test_four_wrong_codes_over_three_servers_leave_the_ticket_alive(three: Fleet, sink: RecordingSink) -> None:
    """The other side of the limit: one wrong code fewer, and the right code still signs in."""
    a, b, c = three.servers
    ask(b, "bob@example.com")
    _, code = link_and_code(sink, "bob@example.com")
    for step, server in enumerate([a, b, c, a], start=1):
        assert_refused(by_code(server, "bob@example.com", other_code(code, step)), 401, "invalid_code")
    assert by_code(c, "bob@example.com", code).status == 200


def test_a_link_raced_on_a_b_and_c_signs_in_once(three: Fleet, sink: RecordingSink) -> None:
    a, b, c = three.servers
    ask(a, "ada@example.com")
    token, _ = link_and_code(sink, "ada@example.com")
    answers = together(*(lambda s=s: by_link(s, token) for s in (a, b, c, a, b, c)))
    assert sorted(x.status for x in answers) == [200, 401, 401, 401, 401, 401], answers
    assert {x.code for x in answers if x.status == 401} == {"invalid_token"}
    assert three.rows("SELECT count(*) FROM sessions")[0][0] == 1


def test_a_code_raced_on_a_b_and_c_signs_in_once(three: Fleet, sink: RecordingSink) -> None:
    a, b, c = three.servers
    ask(b, "ada@example.com")
    _, code = link_and_code(sink, "ada@example.com")
    answers = together(*(lambda s=s: by_code(s, "ada@example.com", code) for s in (a, b, c, a, b, c)))
    assert sorted(x.status for x in answers) == [200, 401, 401, 401, 401, 401], answers
    assert three.rows("SELECT count(*) FROM sessions")[0][0] == 1


# --- 2. sessions --------------------------------------------------------------------------------


def test_a_session_made_on_a_is_refreshed_on_b_and_checked_on_c(three: Fleet, sink: RecordingSink) -> None:
    a, b, c = three.servers
    made = signed_in(three, sink, "ada@example.com", on=2)  # asked on C, signed in on A
    refreshed = call(b, "POST", "/auth/refresh", {"refresh_token": made.body["refresh_token"]})
    assert refreshed.status == 200, refreshed
    me = call(c, "GET", "/auth/me", token=refreshed.body["access_token"])
    assert (me.status, me.body["email"]) == (200, "ada@example.com"), me
    sessions = call(a, "GET", "/auth/sessions", token=refreshed.body["access_token"])
    assert len(sessions.body["sessions"]) == 1, sessions


def test_a_refresh_token_rotated_on_a_and_presented_again_on_b_revokes_the_session_everywhere(
    three: Fleet, sink: RecordingSink
) -> None:
    a, b, c = three.servers
    made = signed_in(three, sink, "ada@example.com")
    rotated = call(a, "POST", "/auth/refresh", {"refresh_token": made.body["refresh_token"]})
    assert rotated.status == 200, rotated
    assert call(c, "GET", "/auth/me", token=rotated.body["access_token"]).status == 200

    assert_refused(call(b, "POST", "/auth/refresh", {"refresh_token": made.body["refresh_token"]}),
                   401, "refresh_token_reused")
    for server in (a, b, c):  # the thief's copy and the rightful one: both dead, on every server
        assert call(server, "GET", "/auth/me", token=rotated.body["access_token"]).status == 401
        assert call(server, "GET", "/auth/me", token=made.body["access_token"]).status == 401
    assert call(c, "POST", "/auth/refresh", {"refresh_token": rotated.body["refresh_token"]}).status == 401


def test_logout_on_b_is_refused_on_a_and_c_at_once(three: Fleet, sink: RecordingSink) -> None:
    a, b, c = three.servers
    made = signed_in(three, sink, "ada@example.com")
    access = made.body["access_token"]
    for server in (a, c):
        assert call(server, "GET", "/auth/me", token=access).status == 200
    assert call(b, "POST", "/auth/logout", token=access).status == 204
    for server in (a, c):
        assert_refused(call(server, "GET", "/auth/me", token=access), 401, "invalid_token")


def test_an_admin_revocation_on_c_is_refused_on_a_and_b_at_once(three: Fleet, sink: RecordingSink) -> None:
    from tests.support.cluster_servers import ADMIN_TOKEN

    a, b, c = three.servers
    made = signed_in(three, sink, "ada@example.com")
    access = made.body["access_token"]
    assert call(a, "GET", "/auth/me", token=access).status == 200
    revoked = call(c, "DELETE", f"/admin/users/{made.body['user']['id']}/sessions", token=ADMIN_TOKEN)
    assert (revoked.status, revoked.body) == (200, {"revoked": 1}), revoked
    for server in (a, b):
        assert call(server, "GET", "/auth/me", token=access).status == 401
    assert call(a, "POST", "/auth/refresh", {"refresh_token": made.body["refresh_token"]}).status == 401


# --- 3. passkeys ----------------------------------------------------------------------------------


def register_passkey(three: Fleet, sink: RecordingSink, device: SoftAuthenticator, address: str) -> str:
    """Sign in by email, then register a passkey with options from A verified on B; its id."""
    a, b, _ = three.servers
    access = signed_in(three, sink, address).body["access_token"]
    options = call(a, "POST", "/auth/passkeys/register/options", {}, token=access)
    assert options.status == 200, options
    credential = device.make_credential(options.body["options"], PUBLIC_URL)
    registered = call(b, "POST", "/auth/passkeys/register/verify", {"credential": credential}, token=access)
    assert registered.status == 201, registered
    return str(registered.body["id"])


def passkey_sign_in(options_on: LiveServer, verify_on: LiveServer, device: SoftAuthenticator, **bend: object) -> Answer:
    options = call(options_on, "POST", "/auth/passkeys/login/options", {})
    assert options.status == 200, options
    assertion = device.get_assertion(options.body["options"], PUBLIC_URL, **bend)  # type: ignore[arg-type]
    return call(verify_on, "POST", "/auth/passkeys/login/verify", {"credential": assertion})


def test_passkey_options_from_one_server_are_verified_on_another(three: Fleet, sink: RecordingSink) -> None:
    a, b, c = three.servers
    device = SoftAuthenticator()
    register_passkey(three, sink, device, "ada@example.com")
    signed = passkey_sign_in(b, c, device)
    assert signed.status == 200, signed
    assert signed.body["user"]["email"] == "ada@example.com"
    me = call(a, "GET", "/auth/me", token=signed.body["access_token"])
    assert (me.status, me.body["passkeys"]) == (200, 1), me


def test_sign_counts_and_clone_detection_hold_across_servers(three: Fleet, sink: RecordingSink) -> None:
    """The authenticator counts 1, 2, 3 over three servers; an assertion counting 2 again (a cloned
    authenticator), on the one server that has not seen 3 itself, is refused."""
    a, b, c = three.servers
    device = SoftAuthenticator()
    register_passkey(three, sink, device, "ada@example.com")
    for options_on, verify_on in ((a, b), (b, c), (c, a)):  # sign counts 1, 2, 3
        assert passkey_sign_in(options_on, verify_on, device).status == 200
    assert three.rows("SELECT sign_count FROM passkeys") == [(3,)]
    assert_refused(passkey_sign_in(a, b, device, sign_count=2), 401, "invalid_credential")
    assert passkey_sign_in(a, c, device, sign_count=4).status == 200  # the real one, counting on
    assert_refused(passkey_sign_in(b, b, device, sign_count=4), 401, "invalid_credential")


def test_a_passkey_challenge_is_spent_once_across_servers(three: Fleet, sink: RecordingSink) -> None:
    a, b, c = three.servers
    device = SoftAuthenticator()
    register_passkey(three, sink, device, "ada@example.com")
    options = call(a, "POST", "/auth/passkeys/login/options", {})
    assertion = device.get_assertion(options.body["options"], PUBLIC_URL)
    answers = together(*(lambda s=s: call(s, "POST", "/auth/passkeys/login/verify", {"credential": assertion})
                         for s in (a, b, c)))
    assert sorted(x.status for x in answers) == [200, 401, 401], answers


# --- 4. the per-email limit -------------------------------------------------------------------------


def test_the_per_email_limit_counts_requests_made_on_every_server(three: Fleet, sink: RecordingSink) -> None:
    """rate_limit.magic_link_per_email is 5/15m by default: five requests over A, B and C, and
    the sixth is refused on whichever server it lands; another address is not affected."""
    a, b, c = three.servers
    for server in (a, b, c, a, b):
        ask(server, "ada@example.com")
    for server in (c, a, b):
        refused = call(server, "POST", "/auth/magic-link", {"email": "ada@example.com"})
        assert_refused(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0, refused.headers
    ask(c, "bob@example.com")
    wait_for_mail(sink, "ada@example.com", 5)
    wait_for_mail(sink, "bob@example.com", 1)


def test_the_per_email_limit_holds_when_the_servers_are_asked_at_the_same_moment(
    three: Fleet, sink: RecordingSink
) -> None:
    a, b, c = three.servers
    answers = together(*(lambda s=s: call(s, "POST", "/auth/magic-link", {"email": "ada@example.com"})
                         for s in (a, b, c) * 3))
    assert Counter(x.status for x in answers) == {202: 5, 429: 4}, answers
    assert three.rows("SELECT count(*) FROM sign_in_tickets")[0][0] == 5
    assert len(wait_for_mail(sink, "ada@example.com", 5)) == 5


# --- 5. emails and webhooks, each sent once; a killed server loses none ---------------------------


def sent_by(three: Fleet, servers: list[LiveServer], metric: str = "email_deliveries_total") -> float:
    return sum(three.metric(s, metric, 'result="sent"') for s in servers)


def test_emails_asked_for_on_three_servers_are_each_delivered_once(three: Fleet, sink: RecordingSink) -> None:
    addresses = [f"user{i}@example.com" for i in range(30)]
    servers = three.servers * 10
    together(*(lambda s=s, x=x: ask(s, x) for s, x in zip(servers, addresses)))
    wait_until(lambda: sorted(set(sink.all_to())) == sorted(addresses), "an email to every address", timeout=20)
    wait_until(lambda: three.rows("SELECT count(*) FROM email_queue WHERE status <> 'sent'")[0][0] == 0,
               "every queued email marked sent")
    # Every delivery the servers made is counted by the one that made it: as many as emails, no more.
    assert sent_by(three, three.servers) == len(addresses)
    assert Counter(sink.all_to()) == Counter(addresses)  # each exactly once


@contextmanager
def slow_smtp(delay: float) -> Iterator[RecordingSink]:
    slow = RecordingSink(delay)
    controller = start_sink(slow)
    slow.port = int(controller.port)
    try:
        yield slow
    finally:
        controller.stop()


def kill_while_sending(tmp_path: Path, slow: RecordingSink, addresses: list[str]) -> tuple[Fleet, set[str]]:
    """A asks for an email to each address and is killed (SIGKILL, its whole process group) once
    the SMTP server is receiving from it; the addresses it had started handing over by then."""
    made = Fleet(tmp_path, cluster().create_database(), slow.port)
    made.start(3)
    a = made.servers[0]
    for address in addresses:
        ask(a, address)
    wait_until(lambda: slow.started, "A sending an email")
    a.stop(signal.SIGKILL)
    with slow.lock:
        handed_over = set(slow.started)
    left = made.rows("SELECT count(*) FROM email_queue WHERE status = 'sending'")[0][0]
    assert left >= 1, "A was killed with nothing leased: the test proves nothing"
    return made, handed_over


def assert_at_least_once(slow: RecordingSink, addresses: list[str], handed_over: set[str]) -> None:
    """Every email arrived; only one that the killed server was handing over may arrive twice."""
    counts = Counter(slow.all_to())
    assert set(counts) == set(addresses), counts
    twice = {address for address, n in counts.items() if n > 1}
    assert twice <= handed_over and max(counts.values()) <= 2, (counts, handed_over)


def test_emails_leased_by_a_killed_server_are_delivered_by_the_others(tmp_path: Path) -> None:
    """email.lease is 2s: once it runs out, B or C retake what A held (traffic goes on: a user
    asks for a link on B). At least once, nothing lost."""
    addresses = [f"user{i}@example.com" for i in range(6)]
    with slow_smtp(1.0) as slow:
        made, handed_over = kill_while_sending(tmp_path, slow, addresses)
        try:
            _, b, c = made.servers
            ask(b, "later@example.com")
            everyone = [*addresses, "later@example.com"]
            wait_until(lambda: set(slow.all_to()) == set(everyone), "every email, A's included", timeout=30)
            wait_until(lambda: made.rows("SELECT count(*) FROM email_queue WHERE status <> 'sent'")[0][0] == 0,
                       "every queued email marked sent", timeout=30)
            assert sent_by(made, [b, c]) == len(everyone)  # B and C sent each email once between them
            assert_at_least_once(slow, everyone, handed_over)
        finally:
            made.close()


def test_emails_leased_by_a_killed_server_are_retaken_without_any_other_traffic(tmp_path: Path) -> None:
    """SCALE.md point 5: workers wake on LISTEN/NOTIFY, polling being the fallback. B and C hear
    of A's emails when they are queued, so once A's lease (2s) runs out they retake them, though
    nobody asks them for anything. Today a worker with nothing to do sleeps IDLE_SECONDS (30s)
    and nothing wakes it but its own server's requests: the emails wait for B's or C's next poll,
    up to half a minute, far beyond the lease; the generous wait below (5 leases) fails then."""
    addresses = [f"user{i}@example.com" for i in range(6)]
    with slow_smtp(0.5) as slow:
        made, handed_over = kill_while_sending(tmp_path, slow, addresses)
        try:
            try:
                wait_until(lambda: set(slow.all_to()) == set(addresses), "B or C to retake A's emails", timeout=10)
            except AssertionError:
                missing = sorted(set(addresses) - set(slow.all_to()))
                raise AssertionError(f"not delivered within 5 leases of A's death: {missing}") from None
            assert_at_least_once(slow, addresses, handed_over)
        finally:
            made.close()


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"multi-server-webhook-key-32bytes").decode()


def test_each_webhook_event_is_delivered_once(tmp_path: Path, sink: RecordingSink) -> None:
    receiver = Receiver()
    hooks = (f'[[webhooks]]\nurl = "{receiver.url}"\nsecret = "{WEBHOOK_SECRET}"\n'
             'events = ["user.created", "login.succeeded"]\n')
    try:
        with fleet(tmp_path, cluster().create_database(), sink.port, extra=hooks) as made:
            addresses = [f"user{i}@example.com" for i in range(6)]
            for i, address in enumerate(addresses):
                signed_in(made, sink, address, on=i % 3)
            expected = Counter({(t, x): 1 for x in addresses for t in ("user.created", "login.succeeded")})
            wait_until(lambda: len(receiver.received()) >= len(expected), "every event delivered", timeout=20)
            wait_until(lambda: made.rows("SELECT count(*) FROM webhook_queue WHERE status <> 'sent'")[0][0] == 0,
                       "every delivery marked sent")
            assert sent_by(made, made.servers, "webhook_deliveries_total") == len(expected)
            hits = receiver.received()
            assert Counter((h.type, h.email) for h in hits) == expected
            assert len({h.id for h in hits}) == len(hits)
    finally:
        receiver.close()


# --- 6. housekeeping ------------------------------------------------------------------------------

EXPIRED_TICKETS = """
INSERT INTO sign_in_tickets (id, email, token_hash, code_hash, created_at, expires_at)
SELECT 'old-' || n, 'old' || n || '@example.com', sha256(('t' || n)::bytea), sha256(('c' || n)::bytea),
       extract(epoch FROM now())::bigint - 3 * 86400, extract(epoch FROM now())::bigint - 3 * 86400 + 900
FROM generate_series(1, ?::integer) AS n
RETURNING 1
"""


def expired_tickets(three: Fleet) -> int:
    return int(three.rows("SELECT count(*) FROM sign_in_tickets WHERE id LIKE 'old-%'")[0][0])


def test_prune_against_the_shared_database_deletes_what_expired_while_the_servers_run(
    three: Fleet, sink: RecordingSink
) -> None:
    """Tickets that expired three days ago (more than a batch of them) go; a live ticket stays
    and signs in; every server goes on answering."""
    a, b, c = three.servers
    three.rows(EXPIRED_TICKETS, 1234)
    ask(a, "ada@example.com")
    _, code = link_and_code(sink, "ada@example.com")

    dry = three.cli("prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"would delete\s+1234 sign_in_tickets", dry.stdout), dry.stdout
    assert expired_tickets(three) == 1234

    done = three.cli("prune")
    assert done.returncode == 0, done.stderr
    assert re.search(r"deleted\s+1234 sign_in_tickets", done.stdout), done.stdout
    assert expired_tickets(three) == 0
    assert by_code(c, "ada@example.com", code).status == 200
    assert all(s.get("/readiness")[0] == 200 for s in (a, b, c))


def test_prunes_running_at_the_same_moment_all_finish_and_delete_each_row_once(three: Fleet) -> None:
    """Housekeeping on five machines at once (the servers' hourly runs: servers started together
    prune together; an operator's cron job): each succeeds, one prunes at a time (a run that
    meets another leaves the rest to it, and says so), and between them they report each
    deleted row once."""
    three.rows(EXPIRED_TICKETS, 60000)
    runs = together(*(lambda: three.cli("prune") for _ in range(5)))
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    reported = [int(m[1]) if (m := re.search(r"deleted\s+(\d+) sign_in_tickets", run.stdout)) else 0 for run in runs]
    assert sum(reported) == 60000, [run.stdout for run in runs]
    assert expired_tickets(three) == 0


def test_housekeeping_holds_an_advisory_lock_while_it_prunes(three: Fleet) -> None:
    """SCALE.md point 6: pruning runs on one server at a time, under an advisory lock, in batches.
    While `prune` works through a large backlog, the lock shows in pg_locks."""
    three.rows(EXPIRED_TICKETS, 40000)
    seen: list[int] = []
    path = three.config("prune", 1)
    process = subprocess.Popen(command("prune", "--config", str(path)), cwd=path.parent, env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while process.poll() is None:
            seen.append(int(three.rows(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND (classid::bigint << 32 | objid::bigint) <> ?",  # not the migrations' lock
                MIGRATION_LOCK,
            )[0][0]))
    finally:
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert expired_tickets(three) == 0, out
    assert len(seen) > 3, "the prune was over too soon to watch"
    assert max(seen) >= 1, f"no advisory lock held in {len(seen)} looks at pg_locks during the prune"


# --- 7. signing keys ----------------------------------------------------------------------------

ES256 = '[jwt]\nalgorithm = "ES256"\n'


def jwks_kids(server: LiveServer) -> list[str]:
    status, body = server.get("/.well-known/jwks.json")
    assert status == 200, body
    return sorted(str(k["kid"]) for k in body["keys"])


def rotate(made: Fleet) -> str:
    """`passwordless keys rotate` against the fleet's database; the new key's kid."""
    rotated = made.cli("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    kid = re.search(r"signing key (\S+),", rotated.stdout)
    assert kid, rotated.stdout
    return kid[1]


def test_servers_starting_together_on_an_empty_database_make_one_key(tmp_path: Path, sink: RecordingSink) -> None:
    """Three ES256 servers started at the same moment publish the same single key, and a token
    signed by one is accepted by the others; a server started after `keys rotate` publishes both."""
    with fleet(tmp_path, cluster().create_database(), sink.port, extra=ES256) as made:
        a, b, c = made.servers
        first = jwks_kids(a)
        assert len(first) == 1 and jwks_kids(b) == first and jwks_kids(c) == first
        assert made.rows("SELECT kid FROM signing_keys") == [(first[0],)]
        access = signed_in(made, sink, "ada@example.com").body["access_token"]
        for server in (a, b, c):
            assert call(server, "GET", "/auth/me", token=access).status == 200

        new_kid = rotate(made)
        (d,) = made.start(1)
        assert jwks_kids(d) == sorted([first[0], new_kid])
        assert call(d, "GET", "/auth/me", token=access).status == 200


def test_a_rotation_is_seen_by_every_running_server_at_once(tmp_path: Path, sink: RecordingSink) -> None:
    """`keys rotate` run elsewhere is published by every running server at once: the rotation
    NOTIFYs them (the reload every keys.KEY_RELOAD_SECONDS, 60 s, is only the fallback, so the
    wait below is a sixth of it)."""
    with fleet(tmp_path, cluster().create_database(), sink.port, extra=ES256) as made:
        a, b, c = made.servers
        first = jwks_kids(a)
        both = sorted([*first, rotate(made)])
        wait_until(lambda: all(jwks_kids(s) == both for s in (a, b, c)), "the new key in every server's JWKS",
                   timeout=KEY_RELOAD_SECONDS / 6, every=0.2)


# --- 8. migrations --------------------------------------------------------------------------------


def test_servers_starting_together_on_an_empty_database_apply_each_migration_once(
    tmp_path: Path, sink: RecordingSink
) -> None:
    known = sorted(int(p.name.split("_")[0]) for p in (ROOT / "migrations" / "postgres").glob("*.sql"))
    assert known, "no migrations found"
    with fleet(tmp_path, cluster().create_database(), sink.port) as made:  # ready: all three came up
        assert made.rows("SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version") == [
            (v, 1) for v in known
        ]
        migrated = made.cli("migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert "applied" not in migrated.stdout and migrated.stdout.strip().endswith("is up to date"), migrated.stdout
        assert signed_in(made, sink, "ada@example.com").status == 200


def test_migrate_brings_an_empty_postgresql_database_up_to_date(tmp_path: Path, sink: RecordingSink) -> None:
    made = Fleet(tmp_path, cluster().create_database(), sink.port)
    migrated = made.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    applied = re.findall(r"^applied (\S+)$", migrated.stdout, re.M)
    assert applied == sorted(p.name for p in (ROOT / "migrations" / "postgres").glob("*.sql")), migrated.stdout
    assert "postgresql://" in migrated.stdout and migrated.stdout.strip().endswith("is up to date")
    again = made.cli("migrate")
    assert again.returncode == 0 and "applied" not in again.stdout, again.stdout


# --- 9. PostgreSQL goes away and comes back -------------------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A PostgreSQL server of this test's own, to stop and start (the suite's is shared); its
    folder short, for the server's Unix socket."""
    started = Cluster.start(Path(tempfile.mkdtemp(prefix="pw-pg-")))
    try:
        yield started
    finally:
        started.stop()


def test_when_postgresql_goes_away_servers_answer_503_and_recover_by_themselves(
    tmp_path: Path, sink: RecordingSink, own_cluster: Cluster
) -> None:
    with fleet(tmp_path, own_cluster.create_database(), sink.port) as made:
        a, b, c = made.servers
        session = signed_in(made, sink, "ada@example.com").body
        with sink.lock:
            sink.answers[:] = ["451 4.3.0 try again later"] * 10_000  # the SMTP server is down too
        ask(a, "queued@example.com")  # queued before the outage, not yet delivered
        wait_until(lambda: made.rows("SELECT attempts FROM email_queue WHERE to_address = ?", "queued@example.com")
                   [0][0] >= 1, "a failed attempt at the queued email")

        own_cluster.kill()
        answers = together(
            *(lambda s=s: call(s, "GET", "/readiness") for s in (a, b, c)),
            *(lambda s=s: call(s, "POST", "/auth/magic-link", {"email": "bob@example.com"}) for s in (a, b, c)),
            lambda: call(c, "GET", "/auth/me", token=session["access_token"]),
            lambda: call(b, "POST", "/auth/refresh", {"refresh_token": session["refresh_token"]}),
            lambda: call(a, "GET", "/liveness"),
        )
        for ready in answers[:3]:
            assert (ready.status, ready.body) == (503, {"status": "not_ready", "reason": "database_unavailable"}), ready
        for refused in answers[3:8]:
            assert_refused(refused, 503, "unavailable")
            assert "retry-after" in refused.headers, refused.headers
        assert (answers[8].status, answers[8].body) == (200, {"status": "alive"})

        own_cluster.restart()
        with sink.lock:
            sink.answers.clear()
        wait_until(lambda: all(s.get("/readiness")[0] == 200 for s in (a, b, c)), "every server ready again",
                   timeout=30, every=0.2)
        for server in (a, b, c):  # the session made before the outage, on every server
            assert call(server, "GET", "/auth/me", token=session["access_token"]).status == 200
        signed_in(made, sink, "bob@example.com", on=1)  # asked on B, signed in on C
        wait_for_mail(sink, "queued@example.com", timeout=30)
        assert all(s.process.poll() is None for s in (a, b, c))  # nobody restarted them
