"""Passkeys (API.md "Passkeys (WebAuthn)", "Errors", "Tokens and sessions", "Audit log"):
registration, sign-in with and without an email, replay and expiry of challenges, every way an
assertion can be wrong, sign-count regression, management, malformed bodies and rate limits.

Everything goes through the real endpoints with real signatures: a software authenticator
(tests/support/authenticator.py) answers the server's options as a browser and a platform authenticator
would, and users sign in first by magic link to get a Bearer token."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import cbor2
import httpx
import pytest

from passwordless.config.settings import Config
from tests.conftest import MakeConfig
from tests.support.app import PEER, AppServer, FakeClock, deps_of
from tests.support.authenticator import (
    AAGUID,
    AT,
    BE,
    BS,
    UP,
    UV,
    CredentialExcluded,
    NoCredential,
    SoftAuthenticator,
    b64url,
    b64url_decode,
    client_data,
)
from tests.support.signin import (
    FILE_MAIL,
    NO_RATE_LIMITS,
    assert_error,
    bearer,
    claims,
    database,
    request_sign_in,
    rows,
)

pytestmark = pytest.mark.anyio

PUBLIC = "http://localhost:3000"
ORIGIN = PUBLIC
RP_ID = "localhost"
TTL = 5 * 60
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.0.0 Safari/537.36"
)
PASSKEY_FIELDS = {"id", "name", "created_at", "last_used_at", "aaguid", "backed_up", "transports"}
TOKEN_FIELDS = {"access_token", "token_type", "expires_in", "refresh_token", "user"}
BASE = FILE_MAIL + NO_RATE_LIMITS


# --- the running server and a few steps every test takes ---------------------------------------


class Server(AppServer):
    clock: FakeClock

    async def register_options(self, headers: dict[str, str]) -> dict[str, Any]:
        response = await self.http.post("/auth/passkeys/register/options", json={}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert set(response.json()) == {"options"}
        options: dict[str, Any] = response.json()["options"]
        return options

    async def register_verify(
        self, headers: dict[str, str], credential: Any, name: str | None = None, user_agent: str = FIREFOX
    ) -> httpx.Response:
        body: dict[str, Any] = {"credential": credential}
        if name is not None:
            body["name"] = name
        return await self.http.post(
            "/auth/passkeys/register/verify", json=body, headers={**headers, "user-agent": user_agent}
        )

    async def register(
        self, headers: dict[str, str], authenticator: SoftAuthenticator, name: str | None = None, **knobs: Any
    ) -> dict[str, Any]:
        """Register a new passkey on `authenticator` for the user of `headers`; the passkey object."""
        options = await self.register_options(headers)
        credential = authenticator.make_credential(options, ORIGIN, **knobs)
        response = await self.register_verify(headers, credential, name)
        assert response.status_code == 201, response.text
        passkey: dict[str, Any] = response.json()
        return passkey

    async def login_options(self, email: str | None = None) -> dict[str, Any]:
        body = {} if email is None else {"email": email}
        response = await self.http.post("/auth/passkeys/login/options", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert set(response.json()) == {"options"}
        options: dict[str, Any] = response.json()["options"]
        return options

    async def login_verify(self, credential: Any, user_agent: str = FIREFOX) -> httpx.Response:
        return await self.http.post(
            "/auth/passkeys/login/verify", json={"credential": credential}, headers={"user-agent": user_agent}
        )

    async def login(
        self, authenticator: SoftAuthenticator, email: str | None = None, **knobs: Any
    ) -> httpx.Response:
        options = await self.login_options(email)
        return await self.login_verify(authenticator.get_assertion(options, ORIGIN, **knobs))

    async def passkeys(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        response = await self.http.get("/auth/passkeys", headers=headers)
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"passkeys"}
        listed: list[dict[str, Any]] = response.json()["passkeys"]
        for passkey in listed:
            assert set(passkey) == PASSKEY_FIELDS, passkey
        return listed

    async def me(self, headers: dict[str, str]) -> dict[str, Any]:
        response = await self.http.get("/auth/me", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def stored(self, passkey_id: str) -> dict[str, Any] | None:
        found = rows(self.config, "SELECT * FROM passkeys WHERE id = ?", passkey_id)
        return found[0] if found else None

    def user_id(self, email: str) -> str:
        user_id: str = rows(self.config, "SELECT id FROM users WHERE email = ?", email)[0]["id"]
        return user_id


@pytest.fixture
def config(make_config: MakeConfig) -> Config:
    made = make_config(BASE)
    assert made.server.public_url == PUBLIC
    assert made.webauthn.rp_id == RP_ID and list(made.webauthn.origins) == [ORIGIN]
    return made


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    async with Server.serving(config) as s:
        yield s


def token_of(response: httpx.Response) -> dict[str, Any]:
    """The token response of a successful passkey sign-in, checked for shape."""
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert set(body) == TOKEN_FIELDS, body
    assert body["token_type"] == "Bearer"
    assert set(body["user"]) == {"id", "email"}
    return body


def b64url_bytes(value: object) -> bytes:
    """Decode a base64url field strictly: the alphabet only, no padding."""
    assert isinstance(value, str) and value, value
    assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), value
    return b64url_decode(value)


# --- registration -------------------------------------------------------------------------------


async def test_registration_options_are_webauthn_level3_json(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    options = await server.register_options(headers)

    assert options["rp"] == {"id": RP_ID, "name": "passwordless"}
    user = options["user"]
    assert set(user) == {"id", "name", "displayName"}
    handle = b64url_bytes(user["id"])
    assert 16 <= len(handle) <= 64
    stored = rows(server.config, "SELECT webauthn_handle FROM users WHERE email = ?", "ada@example.com")
    assert handle == bytes(stored[0]["webauthn_handle"])  # the user handle, not the user's id or email
    assert b"ada" not in handle
    assert user["name"] == "ada@example.com" and user["displayName"] == "ada@example.com"
    assert len(b64url_bytes(options["challenge"])) >= 16
    params = options["pubKeyCredParams"]
    assert all(p["type"] == "public-key" for p in params)
    assert [p["alg"] for p in params] == [-8, -7, -257]
    assert options["timeout"] == TTL * 1000
    assert options["excludeCredentials"] == []
    selection = options["authenticatorSelection"]
    assert selection["residentKey"] == "preferred"
    assert selection["userVerification"] == "preferred"
    assert options["attestation"] == "none"

    again = await server.register_options(headers)
    assert again["challenge"] != options["challenge"]
    assert again["user"]["id"] == user["id"]  # the same user handle every time


async def test_register_verify_creates_a_passkey(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    user_id = server.user_id("ada@example.com")
    assert (await server.me(headers))["passkeys"] == 0
    server.clock.advance(10)
    authenticator = SoftAuthenticator()

    passkey = await server.register(headers, authenticator)

    assert set(passkey) == PASSKEY_FIELDS
    assert isinstance(passkey["id"], str) and passkey["id"]
    assert passkey["name"] == "Passkey (Firefox on Linux)"
    assert passkey["created_at"] == int(server.clock())
    assert passkey["last_used_at"] is None
    assert passkey["aaguid"] == str(uuid.UUID(bytes=AAGUID))
    assert passkey["backed_up"] is False
    assert passkey["transports"] == ["hybrid", "internal"]

    stored = server.stored(passkey["id"])
    assert stored is not None
    assert stored["user_id"] == user_id
    assert bytes(stored["credential_id"]) == next(iter(authenticator.credentials))
    assert stored["sign_count"] == 0

    events = server.audit("passkey_registered")
    assert len(events) == 1
    assert events[0]["user_id"] == user_id and events[0]["success"] == 1
    assert events[0]["details"]["passkey_id"] == passkey["id"]
    assert events[0]["ip"] == PEER[0]

    assert (await server.me(headers))["passkeys"] == 1
    assert await server.passkeys(headers) == [passkey]


async def test_register_uses_the_given_name_and_the_browser_for_the_default(server: Server) -> None:
    headers = await server.bearer("ada@example.com")

    named = await server.register(headers, SoftAuthenticator(), name="My YubiKey")
    assert named["name"] == "My YubiKey"

    options = await server.register_options(headers)
    credential = SoftAuthenticator().make_credential(options, ORIGIN)
    response = await server.register_verify(headers, credential, user_agent=CHROME_MAC)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Passkey (Chrome on macOS)"

    synced = await server.register(headers, SoftAuthenticator(), backup_eligible=True, backed_up=True)
    assert synced["backed_up"] is True
    assert [p["name"] for p in await server.passkeys(headers)] == [
        "My YubiKey", "Passkey (Chrome on macOS)", synced["name"]
    ]


async def test_a_second_registration_excludes_the_first_credential(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    authenticator = SoftAuthenticator()
    await server.register(headers, authenticator)
    (first_id,) = authenticator.credentials

    options = await server.register_options(headers)
    excluded = options["excludeCredentials"]
    assert len(excluded) == 1
    assert excluded[0]["type"] == "public-key"
    assert b64url_bytes(excluded[0]["id"]) == first_id
    with pytest.raises(CredentialExcluded):  # the same authenticator would refuse to make another
        authenticator.make_credential(options, ORIGIN)

    other = SoftAuthenticator()
    response = await server.register_verify(headers, other.make_credential(options, ORIGIN))
    assert response.status_code == 201, response.text
    options = await server.register_options(headers)
    assert {b64url_bytes(c["id"]) for c in options["excludeCredentials"]} == {first_id, *other.credentials}


async def test_registration_needs_a_signed_in_user(server: Server) -> None:
    for path in ("/auth/passkeys/register/options", "/auth/passkeys/register/verify"):
        assert_error(await server.http.post(path, json={}), 401, "unauthorized")
        response = await server.http.post(path, json={}, headers=bearer("not-a-token"))
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] in ("unauthorized", "invalid_token")

    headers = await server.bearer("ada@example.com")
    options = await server.register_options(headers)
    credential = SoftAuthenticator().make_credential(options, ORIGIN)
    assert_error(
        await server.http.post("/auth/passkeys/register/verify", json={"credential": credential}), 401, "unauthorized"
    )
    assert_error(await server.http.get("/auth/passkeys"), 401, "unauthorized")
    assert rows(server.config, "SELECT * FROM passkeys") == []


async def test_registering_the_same_credential_twice_is_refused(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    authenticator = SoftAuthenticator()
    await server.register(headers, authenticator)
    (credential_id,) = authenticator.credentials

    options = await server.register_options(headers)
    again = authenticator.make_credential(options, ORIGIN, credential_id=credential_id, ignore_exclude=True)
    assert_error(await server.register_verify(headers, again), 400, "invalid_request")

    # Nor can another user claim it.
    other = await server.bearer("bob@example.com")
    options = await server.register_options(other)
    stolen = authenticator.make_credential(options, ORIGIN, credential_id=credential_id, ignore_exclude=True)
    assert_error(await server.register_verify(other, stolen), 400, "invalid_request")

    assert len(rows(server.config, "SELECT * FROM passkeys")) == 1
    assert len(server.audit("passkey_registered")) == 1


async def test_a_registration_challenge_belongs_to_the_user_it_was_made_for(server: Server) -> None:
    ada = await server.bearer("ada@example.com")
    bob = await server.bearer("bob@example.com")
    options = await server.register_options(ada)
    credential = SoftAuthenticator().make_credential(options, ORIGIN)
    assert_error(await server.register_verify(bob, credential), 401, "invalid_credential")
    assert rows(server.config, "SELECT * FROM passkeys") == []
    failed = server.audit("passkey_registration_failed")
    assert len(failed) == 1 and failed[0]["user_id"] == server.user_id("bob@example.com")


async def cookie_sign_in(server: Server, email: str) -> dict[str, str]:
    """Signs in as the hosted pages do (the link's form); the Cookie header of that session."""
    token, _ = await request_sign_in(server.http, server.config, email)
    response = await server.http.post(
        "/auth/magic-link/verify", content=urlencode({"token": token}),
        headers={"content-type": "application/x-www-form-urlencoded", "origin": PUBLIC},
    )
    assert response.status_code == 303, response.text
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    server.http.cookies.clear()
    return {"cookie": f"pl_session={cookie['pl_session'].value}"}


async def test_registration_with_the_session_cookie_passes_the_origin_check(server: Server) -> None:
    jar = await cookie_sign_in(server, "ada@example.com")

    assert_error(await server.http.post("/auth/passkeys/register/options", json={}, headers=jar), 403, "forbidden")
    assert_error(
        await server.http.post(
            "/auth/passkeys/register/options", json={}, headers={**jar, "origin": "https://evil.example"}
        ),
        403, "forbidden",
    )
    options = await server.register_options({**jar, "origin": PUBLIC})
    credential = SoftAuthenticator().make_credential(options, ORIGIN)
    assert_error(await server.register_verify(jar, credential), 403, "forbidden")
    response = await server.register_verify({**jar, "origin": PUBLIC}, credential)
    assert response.status_code == 201, response.text
    assert len(await server.passkeys(jar)) == 1  # GET needs no Origin


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"origin": "https://evil.example"}, id="wrong-origin"),
        pytest.param({"rp_id": "evil.example"}, id="wrong-rp-id-hash"),
        pytest.param({"client_data_type": "webauthn.get"}, id="wrong-type"),
        pytest.param({"user_present": False}, id="user-not-present"),
        pytest.param({"challenge": b64url(b"\x01" * 32)}, id="unknown-challenge"),
        pytest.param({"cross_origin": True}, id="cross-origin-iframe"),
    ],
)
async def test_a_registration_that_does_not_verify_is_401(server: Server, knobs: dict[str, Any]) -> None:
    headers = await server.bearer("ada@example.com")
    options = await server.register_options(headers)
    origin = knobs.pop("origin", ORIGIN)
    credential = SoftAuthenticator().make_credential(options, origin, **knobs)
    assert_error(await server.register_verify(headers, credential), 401, "invalid_credential")
    assert rows(server.config, "SELECT * FROM passkeys") == []
    failed = server.audit("passkey_registration_failed")
    assert len(failed) == 1 and failed[0]["success"] == 0
    assert failed[0]["user_id"] == server.user_id("ada@example.com")
    assert server.audit("passkey_registered") == []


# --- sign-in with an email ------------------------------------------------------------------


async def test_sign_in_with_email_lists_the_users_credentials_and_signs_in(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    user_id = server.user_id("ada@example.com")
    phone, laptop = SoftAuthenticator(), SoftAuthenticator()
    first = await server.register(headers, phone)
    await server.register(headers, laptop)
    await server.register(await server.bearer("bob@example.com"), SoftAuthenticator())

    options = await server.login_options("Ada@Example.com")
    assert options["rpId"] == RP_ID
    assert options["userVerification"] == "preferred"
    assert options["timeout"] == TTL * 1000
    assert len(b64url_bytes(options["challenge"])) >= 16
    allowed = options["allowCredentials"]
    assert all(c["type"] == "public-key" for c in allowed)
    assert {b64url_bytes(c["id"]) for c in allowed} == {*phone.credentials, *laptop.credentials}

    server.clock.advance(60)
    response = await server.login_verify(phone.get_assertion(options, ORIGIN, sign_count=7))
    body = token_of(response)
    assert body["user"] == {"id": user_id, "email": "ada@example.com"}
    payload = claims(body["access_token"])
    assert payload["sub"] == user_id
    assert payload["amr"] == ["hwk", "user"]

    stored = server.stored(first["id"])
    assert stored is not None
    assert stored["sign_count"] == 7
    assert stored["last_used_at"] == int(server.clock())
    listed = {p["id"]: p for p in await server.passkeys(bearer(body["access_token"]))}
    assert listed[first["id"]]["last_used_at"] == int(server.clock())
    assert all(p["last_used_at"] is None for i, p in listed.items() if i != first["id"])

    events = server.audit("passkey_login_succeeded")
    assert len(events) == 1
    assert events[0]["user_id"] == user_id and events[0]["success"] == 1
    assert events[0]["details"]["passkey_id"] == first["id"]
    assert (await server.me(bearer(body["access_token"])))["id"] == user_id


async def test_sign_in_without_user_verification_is_amr_hwk_only(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    authenticator = SoftAuthenticator()
    await server.register(headers, authenticator, user_verified=False)
    body = token_of(await server.login(authenticator, "ada@example.com", user_verified=False))
    assert claims(body["access_token"])["amr"] == ["hwk"]
    body = token_of(await server.login(authenticator, "ada@example.com", user_verified=True))
    assert claims(body["access_token"])["amr"] == ["hwk", "user"]


async def test_login_options_for_an_unknown_email_look_like_a_real_users(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    await server.register(headers, SoftAuthenticator())
    await server.sign_in("nokey@example.com")  # a user without passkeys

    real = await server.login_options("ada@example.com")
    unknown = await server.login_options("nobody@example.com")
    unknown_again = await server.login_options("  NOBODY@example.com ")
    keyless = await server.login_options("nokey@example.com")
    other_unknown = await server.login_options("somebody@example.com")

    for options in (unknown, unknown_again, keyless, other_unknown):
        assert set(options) == set(real)
        assert options["rpId"] == real["rpId"] and options["userVerification"] == real["userVerification"]
        assert options["timeout"] == real["timeout"]
        assert 1 <= len(options["allowCredentials"]) <= 3
        for entry in options["allowCredentials"]:
            assert entry.keys() == real["allowCredentials"][0].keys()
            assert entry["type"] == "public-key"
            assert len(b64url_bytes(entry["id"])) in DECOY_LENGTHS
    assert unknown["allowCredentials"] == unknown_again["allowCredentials"]  # stable for an address
    assert unknown["allowCredentials"] != other_unknown["allowCredentials"]
    assert keyless["allowCredentials"] != unknown["allowCredentials"]
    assert len({o["challenge"] for o in (real, unknown, unknown_again, keyless)}) == 4

    # A made-up credential id signs nobody in.
    fake = SoftAuthenticator()
    fake.make_credential(
        {"rp": {"id": RP_ID}, "user": {"id": b64url(b"x" * 32), "name": "n"}, "challenge": "AA"}, ORIGIN,
        credential_id=b64url_decode(unknown["allowCredentials"][0]["id"]),
    )
    assert_error(await server.login_verify(fake.get_assertion(unknown, ORIGIN)), 401, "invalid_credential")


# Credential ID lengths real authenticators produce (Google Password Manager and Chrome's virtual
# authenticator 16, iCloud Keychain 20, Windows Hello 32, security keys 64).
DECOY_LENGTHS = {16, 20, 32, 64}


def _shape(options: dict[str, Any]) -> tuple[tuple[frozenset[str], str, int], ...]:
    """What an observer sees of allowCredentials without knowing any ID: per entry, its fields,
    type and ID length."""
    return tuple(
        (frozenset(e), e["type"], len(b64url_bytes(e["id"]))) for e in options["allowCredentials"]
    )


async def test_decoys_vary_in_number_and_length_like_real_users_credentials(server: Server) -> None:
    # Known users hold 1-3 passkeys from authenticators with different ID lengths.
    known: list[tuple[tuple[frozenset[str], str, int], ...]] = []
    for n, lengths in enumerate([(16,), (20,), (32,), (64,), (16, 32), (20, 64), (16, 20, 32)]):
        email = f"known{n}@example.com"
        headers = await server.bearer(email)
        for length in lengths:  # one device per passkey
            await server.register(headers, SoftAuthenticator(), credential_id=bytes([n, length]) * (length // 2))
        known.append(_shape(await server.login_options(email)))
    unknown = [_shape(await server.login_options(f"stranger{n}@example.com")) for n in range(150)]

    entry_shapes = {(fields, kind) for shape in known + unknown for fields, kind, _ in shape}
    assert len(entry_shapes) == 1  # the same fields and type, known or not
    assert {len(shape) for shape in known} == {len(shape) for shape in unknown} == {1, 2, 3}
    known_lengths = {length for shape in known for _, _, length in shape}
    decoy_lengths = [length for shape in unknown for _, _, length in shape]
    assert set(decoy_lengths) == known_lengths == DECOY_LENGTHS
    # No one length gives decoys away: none is most of them.
    assert max(decoy_lengths.count(length) for length in DECOY_LENGTHS) < len(decoy_lengths) / 2
    # Stable per address, different between addresses.
    again = await server.login_options("Stranger7@Example.com")
    first = await server.login_options("stranger7@example.com")
    assert again["allowCredentials"] == first["allowCredentials"]
    assert len({json.dumps((await server.login_options(f"stranger{n}@example.com"))["allowCredentials"])
                for n in range(10)}) == 10


# --- credential IDs over the WebAuthn limit (1023 bytes) ------------------------------------------


async def test_a_credential_id_over_1023_bytes_is_refused_at_sign_in_without_spending_the_challenge(
    server: Server,
) -> None:
    authenticator = SoftAuthenticator()
    await server.register(await server.bearer("ada@example.com"), authenticator)
    options = await server.login_options("ada@example.com")
    genuine = authenticator.get_assertion(options, ORIGIN)
    for fields in (("id", "rawId"), ("rawId",), ("id",)):
        oversized = json.loads(json.dumps(genuine))
        for field in fields:
            oversized[field] = b64url(b"\x01" * 1024)
        assert_error(await server.login_verify(oversized), 400, "invalid_request")
    # Refused before the challenge was looked up: the genuine assertion still signs in with it.
    token_of(await server.login_verify(genuine))
    # 1023 bytes is within the limit: an unknown credential like any other.
    at_limit = authenticator.get_assertion(await server.login_options("ada@example.com"), ORIGIN)
    at_limit["id"] = at_limit["rawId"] = b64url(b"\x01" * 1023)
    assert_error(await server.login_verify(at_limit), 401, "invalid_credential")


async def test_login_options_leave_out_over_long_stored_ids_and_stay_small(server: Server) -> None:
    authenticator = SoftAuthenticator()
    await server.register(await server.bearer("ada@example.com"), authenticator)
    user_id = server.user_id("ada@example.com")
    with database(server.config) as conn:  # rows an older version let in
        for n in range(100):
            long_id = n.to_bytes(2, "big") * (20_000 if n < 5 else 511)  # 40,000 or 1,022 bytes
            conn.execute(
                "INSERT INTO passkeys (id, user_id, credential_id, public_key, sign_count, transports, aaguid,"
                " backup_eligible, backed_up, name, created_at, last_used_at)"
                " VALUES (?, ?, ?, ?, 0, '[]', ?, 0, 0, 'old', ?, NULL)",
                (f"legacy{n}", user_id, long_id, b"\x00", str(uuid.UUID(int=0)), n),
            )
    response = await server.http.post("/auth/passkeys/login/options", json={"email": "ada@example.com"})
    assert response.status_code == 200, response.text
    assert len(response.content) < 64_000
    listed = [b64url_bytes(e["id"]) for e in response.json()["options"]["allowCredentials"]]
    assert 1 <= len(listed) <= 32
    assert max(map(len, listed)) <= 1023
    assert listed[0] == next(iter(authenticator.credentials))  # the newest one is offered first
    token_of(await server.login(authenticator, "ada@example.com"))


# --- discoverable sign-in -----------------------------------------------------------------------


async def test_discoverable_sign_in_finds_the_user_by_user_handle(server: Server) -> None:
    authenticator = SoftAuthenticator()  # one device, a passkey for each of two users
    await server.register(await server.bearer("ada@example.com"), authenticator)
    await server.register(await server.bearer("bob@example.com"), authenticator)
    ada_id, bob_id = authenticator.credentials

    no_body: dict[str, Any] | None = None
    for body in (no_body, {}):  # no body at all, and an empty object
        response = await server.http.post("/auth/passkeys/login/options", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["options"]["allowCredentials"] == []

    options = await server.login_options()
    assert options["allowCredentials"] == []
    assertion = authenticator.get_assertion(options, ORIGIN, credential_id=ada_id)
    assert b64url_bytes(assertion["response"]["userHandle"]) == authenticator.credentials[ada_id].user_handle
    assert token_of(await server.login_verify(assertion))["user"]["email"] == "ada@example.com"

    options = await server.login_options()
    assert authenticator.find(options).id == bob_id  # the newest resident credential
    assert token_of(await server.login_verify(authenticator.get_assertion(options, ORIGIN)))["user"] == {
        "id": server.user_id("bob@example.com"), "email": "bob@example.com"
    }


async def test_a_non_resident_credential_is_not_offered_for_discoverable_sign_in(server: Server) -> None:
    authenticator = SoftAuthenticator()
    await server.register(await server.bearer("ada@example.com"), authenticator, resident=False)
    with pytest.raises(NoCredential):
        authenticator.get_assertion(await server.login_options(), ORIGIN)
    token_of(await server.login(authenticator, "ada@example.com"))


# --- challenges: single use, expiry, purpose ----------------------------------------------------


async def test_an_assertion_cannot_be_replayed(server: Server) -> None:
    authenticator = SoftAuthenticator()
    await server.register(await server.bearer("ada@example.com"), authenticator)
    options = await server.login_options("ada@example.com")
    assertion = authenticator.get_assertion(options, ORIGIN)
    token_of(await server.login_verify(assertion))

    assert_error(await server.login_verify(assertion), 401, "invalid_credential")
    # Nor a fresh signature (a higher count) over the spent challenge.
    assert_error(await server.login_verify(authenticator.get_assertion(options, ORIGIN)), 401, "invalid_credential")
    assert len(server.audit("passkey_login_failed")) == 2
    assert len(server.audit("passkey_login_succeeded")) == 1


async def test_an_expired_challenge_is_refused(server: Server) -> None:
    authenticator = SoftAuthenticator()
    await server.register(await server.bearer("ada@example.com"), authenticator)

    options = await server.login_options("ada@example.com")
    server.clock.advance(TTL - 5)
    token_of(await server.login_verify(authenticator.get_assertion(options, ORIGIN)))

    options = await server.login_options("ada@example.com")
    server.clock.advance(TTL + 1)
    assert_error(await server.login_verify(authenticator.get_assertion(options, ORIGIN)), 401, "invalid_credential")

    headers = await server.bearer("ada@example.com")
    options = await server.register_options(headers)
    server.clock.advance(TTL + 1)
    credential = SoftAuthenticator().make_credential(options, ORIGIN)
    assert_error(await server.register_verify(headers, credential), 401, "invalid_credential")


async def test_challenge_ttl_comes_from_config(make_config: MakeConfig) -> None:
    config = make_config(BASE + '[webauthn]\nchallenge_ttl = "30s"\n')
    async with Server.serving(config) as server:
        authenticator = SoftAuthenticator()
        await server.register(await server.bearer("ada@example.com"), authenticator)
        options = await server.login_options("ada@example.com")
        assert options["timeout"] == 30_000
        server.clock.advance(31)
        assert_error(
            await server.login_verify(authenticator.get_assertion(options, ORIGIN)), 401, "invalid_credential"
        )


async def test_a_challenge_is_good_for_one_purpose_only(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    authenticator = SoftAuthenticator()
    await server.register(headers, authenticator)

    # A registration challenge answered as a sign-in.
    registration = await server.register_options(headers)
    assertion = authenticator.get_assertion(
        await server.login_options("ada@example.com"), ORIGIN, challenge=registration["challenge"]
    )
    assert_error(await server.login_verify(assertion), 401, "invalid_credential")

    # A sign-in challenge answered as a registration.
    login = await server.login_options("ada@example.com")
    credential = SoftAuthenticator().make_credential(registration, ORIGIN, challenge=login["challenge"])
    assert_error(await server.register_verify(headers, credential), 401, "invalid_credential")
    assert len(await server.passkeys(headers)) == 1


# --- assertions that must not verify ------------------------------------------------------------


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"origin": "https://evil.example"}, id="wrong-origin"),
        pytest.param({"origin": "http://localhost:3001"}, id="wrong-port"),
        pytest.param({"rp_id": "evil.example"}, id="wrong-rp-id-hash"),
        pytest.param({"client_data_type": "webauthn.create"}, id="type-webauthn-create"),
        pytest.param({"tamper_signature": True}, id="bad-signature"),
        pytest.param({"signature": b"\x30\x06\x02\x01\x01\x02\x01\x01"}, id="forged-der-signature"),
        pytest.param({"user_present": False}, id="user-not-present"),
        pytest.param({"cross_origin": True}, id="cross-origin-iframe"),
    ],
)
async def test_an_assertion_that_does_not_verify_is_401(server: Server, knobs: dict[str, Any]) -> None:
    authenticator = SoftAuthenticator()
    passkey = await server.register(await server.bearer("ada@example.com"), authenticator)
    options = await server.login_options("ada@example.com")
    origin = knobs.pop("origin", ORIGIN)
    assertion = authenticator.get_assertion(options, origin, sign_count=1, **knobs)

    assert_error(await server.login_verify(assertion), 401, "invalid_credential")

    failed = server.audit("passkey_login_failed")
    assert len(failed) == 1
    assert failed[0]["success"] == 0 and failed[0]["user_id"] == server.user_id("ada@example.com")
    assert server.audit("passkey_login_succeeded") == []
    stored = server.stored(passkey["id"])
    assert stored is not None and stored["sign_count"] == 0 and stored["last_used_at"] is None
    assert rows(server.config, "SELECT * FROM sessions WHERE amr LIKE '%hwk%'") == []
    # The genuine authenticator still signs in afterwards (with the same count).
    token_of(await server.login(authenticator, "ada@example.com", sign_count=1))


async def test_a_sign_count_that_goes_backwards_is_refused_as_a_possible_clone(server: Server) -> None:
    authenticator = SoftAuthenticator()
    passkey = await server.register(await server.bearer("ada@example.com"), authenticator)
    token_of(await server.login(authenticator, "ada@example.com", sign_count=5))

    for count in (3, 5):
        assert_error(await server.login(authenticator, "ada@example.com", sign_count=count), 401, "invalid_credential")
    failed = server.audit("passkey_login_failed")
    assert len(failed) == 2
    for event in failed:
        assert event["details"]["possible_clone"] is True
        assert event["user_id"] == server.user_id("ada@example.com")
    stored = server.stored(passkey["id"])
    assert stored is not None and stored["sign_count"] == 5

    token_of(await server.login(authenticator, "ada@example.com", sign_count=6))
    assert len(server.audit("passkey_login_succeeded")) == 2


async def test_an_authenticator_without_a_counter_may_stay_at_zero(server: Server) -> None:
    authenticator = SoftAuthenticator()
    await server.register(await server.bearer("ada@example.com"), authenticator)
    for _ in range(2):
        token_of(await server.login(authenticator, "ada@example.com", sign_count=0))
    assert all("possible_clone" not in e["details"] for e in server.audit("passkey_login_failed"))


async def test_a_user_handle_must_belong_to_the_credential(server: Server) -> None:
    ada_device, bob_device = SoftAuthenticator(), SoftAuthenticator()
    await server.register(await server.bearer("ada@example.com"), ada_device)
    await server.register(await server.bearer("bob@example.com"), bob_device)
    (bob_credential,) = bob_device.credentials.values()

    options = await server.login_options()
    assertion = ada_device.get_assertion(options, ORIGIN, user_handle=bob_credential.user_handle)
    assert_error(await server.login_verify(assertion), 401, "invalid_credential")

    options = await server.login_options()
    assertion = ada_device.get_assertion(options, ORIGIN, user_handle=b"\x00" * 32)
    assert_error(await server.login_verify(assertion), 401, "invalid_credential")
    assert server.audit("passkey_login_succeeded") == []
    assert len(server.audit("passkey_login_failed")) == 2


async def test_a_deleted_credential_no_longer_signs_in(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    authenticator = SoftAuthenticator()
    passkey = await server.register(headers, authenticator)
    token_of(await server.login(authenticator))
    response = await server.http.delete(f"/auth/passkeys/{passkey['id']}", headers=headers)
    assert response.status_code == 204, response.text

    assert_error(await server.login(authenticator), 401, "invalid_credential")
    assert_error(await server.login(authenticator, "ada@example.com", credential_id=next(iter(authenticator.credentials))),
                 401, "invalid_credential")


async def test_user_verification_required_by_config(make_config: MakeConfig) -> None:
    config = make_config(BASE + '[webauthn]\nuser_verification = "required"\n')
    async with Server.serving(config) as server:
        headers = await server.bearer("ada@example.com")
        options = await server.register_options(headers)
        assert options["authenticatorSelection"]["userVerification"] == "required"

        # Registration without UV is refused.
        unverified = SoftAuthenticator()
        credential = unverified.make_credential(options, ORIGIN, user_verified=False)
        assert_error(await server.register_verify(headers, credential), 401, "invalid_credential")
        assert await server.passkeys(headers) == []

        authenticator = SoftAuthenticator()
        await server.register(headers, authenticator)
        login = await server.login_options("ada@example.com")
        assert login["userVerification"] == "required"
        assert_error(
            await server.login_verify(authenticator.get_assertion(login, ORIGIN, user_verified=False)),
            401, "invalid_credential",
        )
        body = token_of(await server.login(authenticator, "ada@example.com"))
        assert claims(body["access_token"])["amr"] == ["hwk", "user"]


# --- managing passkeys --------------------------------------------------------------------------


async def test_list_shows_only_ones_own_passkeys(server: Server) -> None:
    ada, bob = await server.bearer("ada@example.com"), await server.bearer("bob@example.com")
    ada_keys = [await server.register(ada, SoftAuthenticator(), name=f"ada {i}") for i in range(2)]
    bob_key = await server.register(bob, SoftAuthenticator(), name="bob")
    assert await server.passkeys(ada) == ada_keys
    assert await server.passkeys(bob) == [bob_key]
    assert await server.passkeys(await server.bearer("carol@example.com")) == []


async def test_rename_trims_and_checks_the_name(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    passkey = await server.register(headers, SoftAuthenticator())
    url = f"/auth/passkeys/{passkey['id']}"

    response = await server.http.patch(url, json={"name": "  Work laptop  "}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {**passkey, "name": "Work laptop"}
    response = await server.http.patch(url, json={"name": "x" * 64}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "x" * 64

    for bad in ({"name": ""}, {"name": "   "}, {"name": "x" * 65}, {"name": 5}, {}, {"name": "ok", "extra": 1}):
        assert_error(await server.http.patch(url, json=bad, headers=headers), 400, "invalid_request")
    assert (await server.passkeys(headers))[0]["name"] == "x" * 64
    assert_error(await server.http.patch(url, json={"name": "x"}), 401, "unauthorized")


async def test_someone_elses_passkey_cannot_be_renamed_or_deleted(server: Server) -> None:
    ada, bob = await server.bearer("ada@example.com"), await server.bearer("bob@example.com")
    bob_key = await server.register(bob, SoftAuthenticator(), name="bob's key")

    for passkey_id in (bob_key["id"], "no-such-passkey"):
        url = f"/auth/passkeys/{passkey_id}"
        assert_error(await server.http.patch(url, json={"name": "mine now"}, headers=ada), 404, "not_found")
        assert_error(await server.http.delete(url, headers=ada), 404, "not_found")

    assert await server.passkeys(bob) == [bob_key]
    assert server.audit("passkey_deleted") == []


async def test_delete_removes_the_passkey_and_is_audited(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    keep = await server.register(headers, SoftAuthenticator())
    gone = await server.register(headers, SoftAuthenticator())
    url = f"/auth/passkeys/{gone['id']}"

    response = await server.http.delete(url, headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert await server.passkeys(headers) == [keep]
    assert (await server.me(headers))["passkeys"] == 1
    events = server.audit("passkey_deleted")
    assert len(events) == 1
    assert events[0]["user_id"] == server.user_id("ada@example.com") and events[0]["success"] == 1
    assert events[0]["details"]["passkey_id"] == gone["id"]
    assert_error(await server.http.delete(url, headers=headers), 404, "not_found")


# --- malformed input: 400 or 401 with the error shape, never 500 --------------------------------

Body = dict[str, Any]
Mutation = Callable[[Body], "Body | bytes"]


def _response(body: Body) -> dict[str, Any]:
    response: dict[str, Any] = body["credential"]["response"]
    return response


def _set(path: str, value: Any) -> Mutation:
    """Set credential field `path` ("response.signature") to value."""

    def mutate(body: Body) -> Body:
        target = body["credential"]
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
        return body

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(body: Body) -> Body:
        target = body["credential"]
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        del target[last]
        return body

    return mutate


def _client_data(raw: bytes) -> Mutation:
    return _set("response.clientDataJSON", b64url(raw))


def _client_data_without_challenge(body: Body) -> Body:
    data = json.loads(b64url_decode(_response(body)["clientDataJSON"]))
    del data["challenge"]
    _response(body)["clientDataJSON"] = b64url(json.dumps(data).encode())
    return body


def _client_data_field(name: str, value: Any) -> Mutation:
    def mutate(body: Body) -> Body:
        data = json.loads(b64url_decode(_response(body)["clientDataJSON"]))
        data[name] = value
        _response(body)["clientDataJSON"] = b64url(json.dumps(data).encode())
        return body

    return mutate


def _client_data_challenge(value: Any) -> Mutation:
    return _client_data_field("challenge", value)


def _truncate_attestation(body: Body) -> Body:
    raw = b64url_decode(_response(body)["attestationObject"])
    _response(body)["attestationObject"] = b64url(raw[: len(raw) // 2])
    return body


def _attestation(value: object) -> Mutation:
    return _set("response.attestationObject", b64url(cbor2.dumps(value)))


def _short_auth_data_in_attestation(body: Body) -> Body:
    _response(body)["attestationObject"] = b64url(
        cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": b"\x00" * 20})
    )
    return body


def _short_authenticator_data(body: Body) -> Body:
    raw = b64url_decode(_response(body)["authenticatorData"])
    _response(body)["authenticatorData"] = b64url(raw[:20])
    return body


def _raw_id_other_length(body: Body) -> Body:
    raw = b64url_decode(body["credential"]["rawId"])
    body["credential"]["rawId"] = b64url(raw + b"\x00")
    return body


def _raw_id_other_length_both(body: Body) -> Body:
    raw = b64url_decode(body["credential"]["rawId"])
    body["credential"]["rawId"] = body["credential"]["id"] = b64url(raw[:16])
    return body


def _extra_credential_fields(body: Body) -> Body:
    body["credential"]["futureField"] = {"nested": [1, 2, 3]}
    _response(body)["futureField"] = "x"
    body["credential"]["clientExtensionResults"] = {"credProps": {"rk": True}, "unknown": 1}
    return body


def _deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _huge(field: str, size: int) -> Mutation:
    return _set(field, "A" * size)


def _replace(value: object) -> Mutation:
    def mutate(body: Body) -> Body | bytes:
        if isinstance(value, bytes):
            return value
        assert isinstance(value, dict)
        return value

    return mutate


def _add_top_level(body: Body) -> Body:
    body["extra"] = True
    return body


# (id, mutation, allowed statuses, reached the credential: a failure must be audited)
COMMON: list[tuple[str, Mutation, set[int], bool]] = [
    ("body-not-json", _replace(b'{"credential": '), {400}, False),
    ("body-a-list", _replace(b"[]"), {400}, False),
    ("credential-missing", _replace({}), {400}, False),
    ("credential-null", _replace({"credential": None}), {400}, False),
    ("credential-a-string", _replace({"credential": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0"}), {400}, False),
    ("credential-a-list", _replace({"credential": [1, 2]}), {400}, False),
    ("unknown-body-field", _add_top_level, {400}, False),
    ("response-missing", _drop("response"), {400}, True),
    ("response-a-string", _set("response", "abc"), {400}, True),
    ("client-data-missing", _drop("response.clientDataJSON"), {400}, True),
    ("client-data-not-base64url", _set("response.clientDataJSON", "**not base64url**"), {400}, True),
    ("client-data-non-ascii", _set("response.clientDataJSON", "é" * 8), {400}, True),
    ("client-data-a-number", _set("response.clientDataJSON", 12345), {400}, True),
    ("client-data-not-json", _client_data(b"this is not json"), {400}, True),
    ("client-data-not-utf8", _client_data(b'{"challenge": "\xff\xfe"}'), {400}, True),
    ("client-data-a-json-list", _client_data(b'["webauthn.get", "challenge"]'), {400}, True),
    ("client-data-a-json-string", _client_data(b'"hello"'), {400}, True),
    ("client-data-deeply-nested", _client_data(_deep_json(20_000)), {400}, True),
    ("challenge-missing", _client_data_without_challenge, {400}, True),
    ("challenge-a-number", _client_data_challenge(12345), {400}, True),
    ("challenge-empty", _client_data_challenge(""), {400, 401}, True),
    ("challenge-an-object", _client_data_challenge({"a": 1}), {400}, True),
    ("cross-origin-a-string", _client_data_field("crossOrigin", "true"), {400}, True),
    ("raw-id-other-length", _raw_id_other_length, {400, 401}, True),
    # For a registration the credential id that counts is the one in the authenticator data.
    ("raw-and-id-other-length", _raw_id_other_length_both, {400, 401, 201}, False),
    ("raw-id-not-base64url", _set("rawId", "%%%%"), {400, 401}, True),
    ("raw-id-a-number", _set("rawId", 7), {400, 401}, True),
    ("id-missing", _drop("id"), {400, 401}, True),
    ("type-wrong", _set("type", "password"), {400, 401}, True),
    ("type-missing", _drop("type"), {400, 401}, True),
    ("attachment-unknown", _set("authenticatorAttachment", "floppy-disk"), {200, 201, 400, 401}, True),
    ("huge-client-data", _huge("response.clientDataJSON", 60_000), {400, 401, 413}, False),
    ("over-the-body-limit", _huge("response.clientDataJSON", 70_000), {413}, False),
    ("extra-credential-fields", _extra_credential_fields, {200, 201, 400, 401}, False),
]

REGISTRATION_ONLY: list[tuple[str, Mutation, set[int], bool]] = [
    ("attestation-missing", _drop("response.attestationObject"), {400, 401}, True),
    ("attestation-not-base64url", _set("response.attestationObject", "!!!~~~"), {400, 401}, True),
    ("attestation-truncated-cbor", _truncate_attestation, {400, 401}, True),
    ("attestation-a-cbor-list", _attestation([1, 2, 3]), {400, 401}, True),
    ("attestation-without-auth-data", _attestation({"fmt": "none", "attStmt": {}}), {400, 401}, True),
    ("attestation-auth-data-a-string", _attestation({"fmt": "none", "attStmt": {}, "authData": "x"}), {400, 401}, True),
    ("attestation-unknown-format", _attestation({"fmt": 7, "attStmt": {}, "authData": b""}), {400, 401}, True),
    ("auth-data-too-short", _short_auth_data_in_attestation, {400, 401}, True),
    ("huge-attestation", _huge("response.attestationObject", 60_000), {400, 401, 413}, False),
    ("transports-garbage", _set("response.transports", ["usb", 5, None, "x" * 100, {"a": 1}]), {201, 400}, False),
    ("transports-a-string", _set("response.transports", "usb"), {201, 400}, False),
]

LOGIN_ONLY: list[tuple[str, Mutation, set[int], bool]] = [
    ("authenticator-data-missing", _drop("response.authenticatorData"), {400, 401}, True),
    ("authenticator-data-too-short", _short_authenticator_data, {400, 401}, True),
    ("authenticator-data-empty", _set("response.authenticatorData", ""), {400, 401}, True),
    ("signature-missing", _drop("response.signature"), {400, 401}, True),
    ("signature-not-base64url", _set("response.signature", "***not~base64url***"), {400, 401}, True),
    ("signature-empty", _set("response.signature", ""), {400, 401}, True),
    ("signature-a-list", _set("response.signature", [1, 2]), {400, 401}, True),
    ("user-handle-not-base64url", _set("response.userHandle", "%%%"), {400, 401}, True),
    ("user-handle-a-number", _set("response.userHandle", 42), {400, 401}, True),
    ("user-handle-an-object", _set("response.userHandle", {"id": "x"}), {400, 401}, True),
    ("huge-signature", _huge("response.signature", 60_000), {400, 401, 413}, False),
]


def _cases(extra: list[tuple[str, Mutation, set[int], bool]]) -> list[Any]:
    return [pytest.param(mutate, statuses, reached, id=name) for name, mutate, statuses, reached in COMMON + extra]


async def _send(server: Server, path: str, body: Body | bytes, headers: dict[str, str]) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await server.http.post(path, content=content, headers={**headers, "content-type": "application/json"})


def _check_refusal(response: httpx.Response, statuses: set[int]) -> None:
    assert response.status_code != 500, response.text
    assert response.status_code in statuses, (response.status_code, response.text)
    codes = {400: "invalid_request", 401: "invalid_credential", 413: "payload_too_large"}
    if response.status_code in codes:
        assert_error(response, response.status_code, codes[response.status_code])


@pytest.mark.parametrize(("mutate", "statuses", "reached"), _cases(REGISTRATION_ONLY))
async def test_malformed_registration_credentials(
    server: Server, mutate: Mutation, statuses: set[int], reached: bool
) -> None:
    headers = await server.bearer("ada@example.com")
    options = await server.register_options(headers)
    authenticator = SoftAuthenticator()
    body = mutate({"credential": authenticator.make_credential(options, ORIGIN)})
    (credential_id,) = authenticator.credentials

    response = await _send(server, "/auth/passkeys/register/verify", body, headers)

    _check_refusal(response, statuses)
    failed = server.audit("passkey_registration_failed")
    if response.status_code == 201:
        assert set(response.json()) == PASSKEY_FIELDS
        assert len(await server.passkeys(headers)) == 1
        stored = server.stored(response.json()["id"])
        assert stored is not None and bytes(stored["credential_id"]) == credential_id
    else:
        assert await server.passkeys(headers) == []
    if reached:
        assert len(failed) == 1, "a refused credential is audited"
        assert failed[0]["user_id"] == server.user_id("ada@example.com") and failed[0]["success"] == 0
    # The server is still well: a proper registration still works.
    await server.register(headers, SoftAuthenticator())


@pytest.mark.parametrize(("mutate", "statuses", "reached"), _cases(LOGIN_ONLY))
async def test_malformed_login_credentials(
    server: Server, mutate: Mutation, statuses: set[int], reached: bool
) -> None:
    authenticator = SoftAuthenticator()
    await server.register(await server.bearer("ada@example.com"), authenticator)
    options = await server.login_options("ada@example.com")
    body = mutate({"credential": authenticator.get_assertion(options, ORIGIN)})

    response = await _send(server, "/auth/passkeys/login/verify", body, {"user-agent": FIREFOX})

    _check_refusal(response, {200 if s == 201 else s for s in statuses})
    if response.status_code == 200:
        token_of(response)
    else:
        assert server.audit("passkey_login_succeeded") == []
    if reached:
        failed = server.audit("passkey_login_failed")
        assert len(failed) == 1, "a refused credential is audited"
        assert failed[0]["success"] == 0
    token_of(await server.login(authenticator, "ada@example.com"))


@pytest.mark.parametrize(
    "cose_key",
    [
        # One CBOR byte 0x04 (the integer 4): py_webauthn reads a leading 0x04 as an uncompressed EC point.
        pytest.param(cbor2.dumps(4), id="cbor-integer-4"),
        pytest.param(cbor2.dumps({1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32}), id="point-not-on-curve"),
        pytest.param(cbor2.dumps({1: 2, 3: -7, -1: 1, -2: b"\x01" * 32}), id="ec2-without-y"),
        pytest.param(cbor2.dumps({1: 2, 3: -7}), id="ec2-without-curve"),
        pytest.param(cbor2.dumps({1: 1, 3: -8, -1: 6, -2: b"\x01" * 5}), id="ed25519-key-of-5-bytes"),
        pytest.param(cbor2.dumps({1: 3, 3: -257, -1: b"", -2: b"\x01\x00\x01"}), id="rsa-without-modulus"),
        pytest.param(cbor2.dumps("not a map"), id="a-cbor-string"),
    ],
)
async def test_registration_refuses_a_public_key_that_is_not_a_key(server: Server, cose_key: bytes) -> None:
    """A credential whose COSE key cannot check any signature is not a credential: it is refused
    (400 or 401), not stored as a passkey that can never sign in."""
    headers = await server.bearer("ada@example.com")
    options = await server.register_options(headers)
    authenticator = SoftAuthenticator()
    credential = authenticator.make_credential(options, ORIGIN, cose_key=cose_key)
    response = await server.register_verify(headers, credential)
    if response.status_code == 201:
        # Show what the stored key leads to: the passkey can never be used.
        sign_in = await server.login(authenticator, "ada@example.com")
        assert sign_in.status_code != 500, sign_in.text
    _check_refusal(response, {400, 401})
    assert await server.passkeys(headers) == []


async def test_unknown_fields_in_options_bodies_are_refused(server: Server) -> None:
    headers = await server.bearer("ada@example.com")
    assert_error(
        await server.http.post("/auth/passkeys/register/options", json={"x": 1}, headers=headers), 400, "invalid_request"
    )
    assert_error(await server.http.post("/auth/passkeys/login/options", json={"user": "a"}), 400, "invalid_request")
    assert_error(await server.http.post("/auth/passkeys/login/options", json={"email": 5}), 400, "invalid_request")
    response = await server.http.post(
        "/auth/passkeys/login/verify", content=b"credential=x", headers={"content-type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")


# --- rate limits ------------------------------------------------------------------------------


async def test_failed_passkey_verifications_are_rate_limited_per_ip(make_config: MakeConfig) -> None:
    # One passkey sign-in spends two of passkey_per_ip: the options and the verify.
    config = make_config(FILE_MAIL + '[rate_limit]\npasskey_per_ip = "6/1m"\nverify_per_ip = "1/1m"\n')
    async with Server.serving(config) as server:
        stranger = SoftAuthenticator()  # its credential was never registered
        stranger.make_credential(
            {"rp": {"id": RP_ID}, "user": {"id": b64url(b"u" * 32), "name": "x"}, "challenge": "AA"}, ORIGIN,
            resident=True,
        )
        for _ in range(3):
            assert_error(await server.login(stranger), 401, "invalid_credential")

        response = await server.http.post("/auth/passkeys/login/options", json={})
        assert_error(response, 429, "rate_limited")
        assert 1 <= int(response.headers["retry-after"]) <= 60
        limited = server.audit("rate_limited")
        assert limited and limited[-1]["ip"] == PEER[0]
        assert limited[-1]["details"] == {"scope": "passkey_per_ip"}
        hits = deps_of(server.app).metrics.registry.get_sample_value(
            "rate_limit_hits_total", {"scope": "passkey_per_ip"}
        )
        assert hits == 1

        server.clock.advance(61)
        assert_error(await server.login(stranger), 401, "invalid_credential")


async def _post_from(server: Server, ip: str, path: str, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=server.app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as client:
        return await client.post(path, json=body)


async def test_passkey_options_and_verify_are_limited_per_ip_and_per_ipv6_64(make_config: MakeConfig) -> None:
    config = make_config(FILE_MAIL + '[rate_limit]\npasskey_per_ip = "3/1m"\n')
    async with Server.serving(config) as server:
        authenticator = SoftAuthenticator()
        await server.register(await server.bearer("ada@example.com"), authenticator)
        attacker = "2001:db8:1:2::1"
        for n in range(3):
            response = await _post_from(server, attacker, "/auth/passkeys/login/options", {"email": f"v{n}@example.com"})
            assert response.status_code == 200, response.text
        # The next options or verify from anywhere in that /64 is refused, a valid assertion included.
        assert_error(await _post_from(server, "2001:db8:1:2:ffff::9", "/auth/passkeys/login/options", {}), 429,
                     "rate_limited")
        options = await server.login_options("ada@example.com")  # another address: its own budget
        assertion = authenticator.get_assertion(options, ORIGIN)
        refused = await _post_from(server, attacker, "/auth/passkeys/login/verify", {"credential": assertion})
        assert_error(refused, 429, "rate_limited")
        assert refused.headers["retry-after"]
        # The assertion was not spent by the refusal: its owner signs in from their own address.
        token_of(await server.login_verify(assertion))
        assert (await _post_from(server, "2001:db8:1:3::1", "/auth/passkeys/login/options", {})).status_code == 200


# --- the software authenticator itself (so the tests above can be trusted) --------------------------


def test_the_software_authenticator_builds_what_py_webauthn_verifies() -> None:
    from webauthn import verify_authentication_response, verify_registration_response
    from webauthn.helpers.exceptions import InvalidAuthenticationResponse

    authenticator = SoftAuthenticator()
    challenge = b"c" * 32
    options = {
        "rp": {"id": RP_ID, "name": "x"}, "user": {"id": b64url(b"h" * 32), "name": "a", "displayName": "a"},
        "challenge": b64url(challenge), "authenticatorSelection": {"residentKey": "preferred"},
    }
    credential = authenticator.make_credential(options, ORIGIN)
    assert set(credential) == {"id", "rawId", "type", "response", "clientExtensionResults", "authenticatorAttachment"}
    assert credential["type"] == "public-key" and credential["clientExtensionResults"] == {}
    data = json.loads(b64url_decode(credential["response"]["clientDataJSON"]))
    assert data == {"type": "webauthn.create", "challenge": b64url(challenge), "origin": ORIGIN, "crossOrigin": False}
    attestation = cbor2.loads(b64url_decode(credential["response"]["attestationObject"]))
    auth_data = attestation["authData"]
    assert auth_data[:32] == hashlib.sha256(RP_ID.encode()).digest()
    assert auth_data[32] == UP | UV | AT
    verified = verify_registration_response(
        credential=credential, expected_challenge=challenge, expected_rp_id=RP_ID, expected_origin=ORIGIN,
        require_user_verification=True,
    )
    request = {"rpId": RP_ID, "challenge": b64url(b"d" * 32), "allowCredentials": []}
    assertion = authenticator.get_assertion(request, ORIGIN, backup_eligible=True, backed_up=True)
    assert b64url_decode(assertion["response"]["authenticatorData"])[32] == UP | UV | BE | BS
    assert b64url_decode(assertion["response"]["userHandle"]) == b"h" * 32
    result = verify_authentication_response(
        credential=assertion, expected_challenge=b"d" * 32, expected_rp_id=RP_ID, expected_origin=ORIGIN,
        credential_public_key=verified.credential_public_key, credential_current_sign_count=0,
        require_user_verification=True,
    )
    assert result.new_sign_count == 1 and result.user_verified
    tampered = authenticator.get_assertion(request, ORIGIN, tamper_signature=True)
    with pytest.raises(InvalidAuthenticationResponse, match="signature"):
        verify_authentication_response(
            credential=tampered, expected_challenge=b"d" * 32, expected_rp_id=RP_ID, expected_origin=ORIGIN,
            credential_public_key=verified.credential_public_key, credential_current_sign_count=1,
        )
    assert client_data("webauthn.get", "x", ORIGIN) == (
        b'{"type":"webauthn.get","challenge":"x","origin":"http://localhost:3000","crossOrigin":false}'
    )
    assert base64.urlsafe_b64encode(b"\xff").rstrip(b"=") == b64url(b"\xff").encode()
