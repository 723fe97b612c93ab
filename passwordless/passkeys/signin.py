"""Signing in with a passkey: options (with an email, that user's credentials or decoys; without,
any discoverable one) and the verified assertion's sign-in."""

from __future__ import annotations

import hmac
from typing import Any

from webauthn import generate_authentication_options
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.structs import (
    PublicKeyCredentialDescriptor,
    UserVerificationRequirement,
)

from passwordless.passkeys import ceremony, store
from passwordless.passkeys.ceremony import MalformedCredential, RejectedCredential
from passwordless.passkeys.decoys import decoy_ids
from passwordless.passkeys.service import PasskeyDeps, answer, audit_event, challenge_hash, failed, invalid
from passwordless.passkeys.store import Passkey
from passwordless.platform import audit
from passwordless.platform.client import Client
from passwordless.platform.crypto import random_bytes
from passwordless.platform.db.types import Connection
from passwordless.sessions import service as sessions
from passwordless.sessions.limits import check_ip_limit
from passwordless.sessions.service import SignIn
from passwordless.users import store as users
from passwordless.users.rules import normalise_email

# At most this many of a user's credentials (most recently used first) are listed for a sign-in with
# an email, so that one small request cannot draw a large answer whatever the account holds.
MAX_ALLOWED_CREDENTIALS = 32


async def login_options(deps: PasskeyDeps, email: str | None, client: Client) -> dict[str, Any]:
    """Without an email: any discoverable passkey (usernameless, autofill). With one: that user's
    passkeys — and for an address without any, made-up ones, so the answer tells nothing."""
    await check_ip_limit(deps.limits, "passkey", client)
    config, now = deps.webauthn, deps.clock()
    allowed: list[bytes] = []
    if email is not None:
        address = normalise_email(email)
        user = await deps.db.read(users.by_email, address)
        mine = await deps.db.read(
            store.sign_in_ids, user.id, ceremony.MAX_CREDENTIAL_ID_BYTES, MAX_ALLOWED_CREDENTIALS
        ) if user else []
        allowed = mine or decoy_ids(deps.decoy_key, address)
    challenge = random_bytes(32)
    options = generate_authentication_options(
        rp_id=config.rp_id, challenge=challenge, timeout=int(config.challenge_ttl * 1000),
        allow_credentials=[PublicKeyCredentialDescriptor(id=c) for c in allowed],
        user_verification=UserVerificationRequirement(config.user_verification),
    )
    await deps.db.write(
        store.add_challenge, challenge_hash(challenge), "authentication", None, now, now + config.challenge_ttl
    )
    return options_to_json_dict(options)


async def login(deps: PasskeyDeps, credential: dict[str, Any], client: Client) -> SignIn:
    await check_ip_limit(deps.limits, "passkey", client)
    config, now = deps.webauthn, deps.clock()
    passkey: Passkey | None = None
    try:
        challenge = ceremony.challenge_of(credential)
        raw_id = ceremony.raw_id_of(credential)

        def spend_and_find(conn: Connection) -> tuple[bool, Passkey | None, bytes | None]:
            """Spend the challenge and find the credential and its user's handle: one transaction."""
            found, _ = store.spend_challenge(conn, challenge_hash(challenge), "authentication", now)
            passkey = store.by_credential_id(conn, raw_id) if found else None
            return found, passkey, users.webauthn_handle(conn, passkey.user_id) if passkey else None

        found, passkey, handle = await deps.db.write(spend_and_find)
        if not found:
            raise RejectedCredential("unknown, used or expired challenge")
        if passkey is None:
            raise RejectedCredential("unknown credential")
        _check_user_handle(credential, handle)
        verified = ceremony.verify_authentication(
            credential, challenge, config.rp_id, list(config.origins), passkey.public_key, passkey.sign_count,
            config.user_verification == "required",
        )
    except (MalformedCredential, RejectedCredential) as exc:
        deps.metrics.attempt("passkey", False)
        await failed(deps, "passkey_login_failed", client, passkey.user_id if passkey else None, exc)
        raise answer(exc) from None
    amr = ("hwk", "user") if verified.user_verified else ("hwk",)
    found_passkey = passkey

    def sign_in(conn: Connection) -> SignIn | None:
        user = users.by_id(conn, found_passkey.user_id)
        if user is None:
            return None
        store.record_use(conn, found_passkey.id, verified.new_sign_count, verified.credential_backed_up, now)
        details = {"passkey_id": found_passkey.id, "user_verified": verified.user_verified}
        audit.record(conn, audit_event("passkey_login_succeeded", True, client, user.id, details, user.email), now)
        proof = sessions.Proof("passkey", amr)
        return sessions.complete_sign_in(conn, deps.sessions.jwt.refresh_ttl, deps.outbox, user, proof, client, now)

    result = await deps.db.write(sign_in)
    deps.metrics.attempt("passkey", result is not None)
    if result is None:
        raise invalid()
    return result


def _check_user_handle(credential: dict[str, Any], handle: bytes | None) -> None:
    """A user handle, when the authenticator sends one, must be that of the credential's user."""
    response = credential.get("response")
    given = response.get("userHandle") if isinstance(response, dict) else None
    if given in (None, ""):
        return
    if handle is None or not hmac.compare_digest(ceremony.b64url_decode(given), handle):
        raise RejectedCredential("the user handle does not belong to this credential")
