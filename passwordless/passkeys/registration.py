"""Registering a passkey for a signed-in user: after a recent sign-in, at most webauthn.max_passkeys,
and the owner is told by email."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from webauthn import generate_registration_options
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from passwordless.mail import queue
from passwordless.mail.render import Rendered
from passwordless.passkeys import ceremony, store
from passwordless.passkeys.ceremony import MalformedCredential, RejectedCredential
from passwordless.passkeys.service import PasskeyDeps, answer, audit_event, challenge_hash, failed
from passwordless.passkeys.store import Passkey
from passwordless.platform import audit
from passwordless.platform.client import Client
from passwordless.platform.crypto import new_id, random_bytes
from passwordless.platform.db.types import Connection
from passwordless.platform.errors import ApiError, invalid_request
from passwordless.sessions import service as sessions
from passwordless.sessions.service import Principal
from passwordless.users import store as users
from passwordless.users.rules import browser_name
from passwordless.webhooks import events

ALGORITHMS = [
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]


def _passkey_limit(deps: PasskeyDeps) -> ApiError:
    limit = deps.webauthn.max_passkeys
    return ApiError(409, "passkey_limit", f"An account holds at most {limit} passkeys; delete one first.")


async def registration_options(deps: PasskeyDeps, principal: Principal) -> dict[str, Any]:
    config, now = deps.webauthn, deps.clock()
    user = principal.user
    await sessions.require_recent_sign_in(deps.sessions, principal)

    def prepare(conn: Connection) -> tuple[bytes, list[Passkey]]:
        handle = users.webauthn_handle(conn, user.id) or b""
        return handle, store.for_user(conn, user.id)

    handle, existing = await deps.db.read(prepare)
    if len(existing) >= config.max_passkeys:
        raise _passkey_limit(deps)
    challenge = random_bytes(32)
    options = generate_registration_options(
        rp_id=config.rp_id, rp_name=config.rp_name, user_name=user.email, user_id=handle,
        user_display_name=user.email, challenge=challenge, timeout=int(config.challenge_ttl * 1000),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement(config.resident_key),
            user_verification=UserVerificationRequirement(config.user_verification),
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=p.credential_id) for p in existing],
        supported_pub_key_algs=ALGORITHMS,
    )
    await deps.db.write(
        store.add_challenge, challenge_hash(challenge), "registration", user.id, now, now + config.challenge_ttl
    )
    return options_to_json_dict(options)


async def register(
    deps: PasskeyDeps, principal: Principal, credential: dict[str, Any], name: str | None, client: Client
) -> Passkey:
    config, now = deps.webauthn, deps.clock()
    await sessions.require_recent_sign_in(deps.sessions, principal)
    try:
        challenge = ceremony.challenge_of(credential)
        if ceremony.credential_id_too_long(ceremony.raw_id_of(credential)):
            raise MalformedCredential("credential ID longer than 1023 bytes")
        found, owner = await deps.db.write(store.spend_challenge, challenge_hash(challenge), "registration", now)
        if not found or owner != principal.user.id:
            raise RejectedCredential("unknown, used or expired challenge")
        verified = ceremony.verify_registration(
            credential, challenge, config.rp_id, list(config.origins), config.user_verification == "required"
        )
        if ceremony.credential_id_too_long(verified.credential_id):
            raise MalformedCredential("credential ID longer than 1023 bytes")
    except (MalformedCredential, RejectedCredential) as exc:
        await failed(deps, "passkey_registration_failed", client, principal.user.id, exc)
        raise answer(exc) from None
    passkey = Passkey(
        new_id(), principal.user.id, verified.credential_id, verified.credential_public_key, verified.sign_count,
        _transports(credential), verified.aaguid, verified.credential_device_type == "multi_device",
        verified.credential_backed_up, " ".join((name or "").split()) or f"Passkey ({browser_name(client.user_agent)})",
        int(now), None,
    )
    notice = _added_notice(deps, principal.user.email, passkey.name, now)

    def save(conn: Connection) -> str:
        # Counted in the write transaction: two verifies racing cannot both take the last place.
        if store.count_for_user(conn, principal.user.id) >= config.max_passkeys:
            return "limit"
        if not store.insert(conn, passkey):
            return "duplicate"
        details: dict[str, object] = {"passkey_id": passkey.id, "aaguid": passkey.aaguid}
        audit.record(conn, audit_event("passkey_registered", True, client, principal.user.id, details), now)
        events.emit(conn, deps.outbox, "passkey.registered", principal.user, now, passkey_id=passkey.id)
        # The owner hears of every new key, whoever added it; only if the passkey is saved.
        queue.enqueue(conn, principal.user.email, notice.subject, notice.text, notice.html, now)
        return "saved"

    outcome = await deps.db.write(save)
    if outcome == "limit":
        raise _passkey_limit(deps)
    if outcome == "duplicate":
        raise invalid_request("This passkey is registered already.")
    deps.wake_mail()
    return passkey


def _added_notice(deps: PasskeyDeps, email: str, name: str, now: float) -> Rendered:
    when = datetime.fromtimestamp(int(now), tz=timezone.utc).strftime("%H:%M UTC on %d %b %Y")
    return deps.templates.render(
        "passkey_added",
        {
            "site": deps.webauthn.rp_name,
            "name": name,
            "time": when,
            "link": f"{deps.public_url}/account",
            "email": email,
        },
    )


def _transports(credential: dict[str, Any]) -> tuple[str, ...]:
    response = credential.get("response")
    found = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(found, list):
        return ()
    return tuple(t for t in found if isinstance(t, str) and len(t) <= 32)[:8]
