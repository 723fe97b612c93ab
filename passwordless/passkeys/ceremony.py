"""The WebAuthn ceremonies through py_webauthn, with every way a credential can be wrong sorted
into two answers: not a credential at all (400) or a credential we do not accept (401)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from webauthn import verify_authentication_response, verify_registration_response
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers import decode_credential_public_key
from webauthn.helpers import exceptions as wx
from webauthn.helpers.decoded_public_key_to_cryptography import decoded_public_key_to_cryptography
from webauthn.registration.verify_registration_response import VerifiedRegistration

_MALFORMED = (
    wx.InvalidJSONStructure,
    wx.InvalidCBORData,
    wx.InvalidAuthenticatorDataStructure,
    wx.InvalidAttestationObjectStructure,
    wx.InvalidPublicKeyStructure,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    binascii.Error,
)


# WebAuthn Level 3 caps a credential ID at 1023 bytes; longer ones only serve to bloat storage and
# every sign-in options answer that lists them.
MAX_CREDENTIAL_ID_BYTES = 1023


def credential_id_too_long(raw: bytes) -> bool:
    return len(raw) > MAX_CREDENTIAL_ID_BYTES


class MalformedCredential(Exception):
    """Not a credential: missing fields, bad base64url, undecodable CBOR or JSON."""


class RejectedCredential(Exception):
    """A well-formed credential that does not verify."""


def b64url_decode(text: object) -> bytes:
    if not isinstance(text, str) or len(text) > 65536:
        raise MalformedCredential("expected a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedCredential("bad base64url") from None


def _client_data(credential: Mapping[str, object]) -> dict[str, object]:
    response = credential.get("response")
    if not isinstance(response, dict):
        raise MalformedCredential("missing response")
    try:
        client_data = json.loads(b64url_decode(response.get("clientDataJSON")))
    except (ValueError, RecursionError):
        raise MalformedCredential("clientDataJSON is not JSON") from None
    if not isinstance(client_data, dict):
        raise MalformedCredential("clientDataJSON is not an object")
    return client_data


def challenge_of(credential: Mapping[str, object]) -> bytes:
    """The challenge a credential answers, read from its clientDataJSON."""
    challenge = b64url_decode(_client_data(credential).get("challenge"))
    if not challenge:
        raise MalformedCredential("empty challenge")
    return challenge


def _refuse_cross_origin(credential: Mapping[str, object]) -> None:
    """A ceremony run inside a cross-origin iframe (crossOrigin: true) is refused: no site that
    embeds our pages may register or sign in with a passkey through them. py_webauthn does not check it."""
    cross_origin = _client_data(credential).get("crossOrigin", False)
    if not isinstance(cross_origin, bool):
        raise MalformedCredential("crossOrigin is not a boolean")
    if cross_origin:
        raise RejectedCredential("cross-origin ceremony (crossOrigin: true)")


def raw_id_of(credential: Mapping[str, object]) -> bytes:
    """The credential ID, refused when either of its spellings (id, rawId) is over the limit."""
    for spelling in ("id", "rawId"):
        given = credential.get(spelling)
        if given is not None and credential_id_too_long(b64url_decode(given)):
            raise MalformedCredential(f"credential ID over {MAX_CREDENTIAL_ID_BYTES} bytes")
    return b64url_decode(credential.get("rawId", credential.get("id")))


def verify_registration(
    credential: dict[str, Any], challenge: bytes, rp_id: str, origins: list[str], require_uv: bool
) -> VerifiedRegistration:
    _refuse_cross_origin(credential)
    try:
        verified = verify_registration_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id,
            expected_origin=origins, require_user_verification=require_uv,
        )
        # "none" attestation checks no signature with the new key: make sure it is a usable key.
        decoded_public_key_to_cryptography(decode_credential_public_key(verified.credential_public_key))
        return verified
    except _MALFORMED as exc:
        raise MalformedCredential(str(exc)) from None
    except (wx.WebAuthnException, UnsupportedAlgorithm) as exc:
        raise RejectedCredential(str(exc)) from None


def verify_authentication(
    credential: dict[str, Any], challenge: bytes, rp_id: str, origins: list[str], public_key: bytes,
    sign_count: int, require_uv: bool,
) -> VerifiedAuthentication:
    _refuse_cross_origin(credential)
    try:
        return verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origins,
            credential_public_key=public_key, credential_current_sign_count=sign_count,
            require_user_verification=require_uv,
        )
    except _MALFORMED as exc:
        raise MalformedCredential(str(exc)) from None
    except wx.WebAuthnException as exc:
        raise RejectedCredential(str(exc)) from None
