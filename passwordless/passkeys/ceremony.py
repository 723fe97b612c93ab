"""The WebAuthn ceremonies through py_webauthn, with every way a credential can be wrong sorted
into two answers: not a credential at all (400) or a credential we do not accept (401)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from webauthn import verify_authentication_response, verify_registration_response
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from cryptography.exceptions import UnsupportedAlgorithm
from webauthn.helpers import decode_credential_public_key, exceptions as wx
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


MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn Level 3: a credential ID is at most 1023 bytes


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


def challenge_of(credential: Mapping[str, object]) -> bytes:
    """The challenge a credential answers, read from its clientDataJSON."""
    response = credential.get("response")
    if not isinstance(response, dict):
        raise MalformedCredential("missing response")
    try:
        client_data = json.loads(b64url_decode(response.get("clientDataJSON")))
    except (ValueError, RecursionError):
        raise MalformedCredential("clientDataJSON is not JSON") from None
    if not isinstance(client_data, dict):
        raise MalformedCredential("clientDataJSON is not an object")
    challenge = b64url_decode(client_data.get("challenge"))
    if not challenge:
        raise MalformedCredential("empty challenge")
    return challenge


def raw_id_of(credential: Mapping[str, object]) -> bytes:
    return b64url_decode(credential.get("rawId", credential.get("id")))


def verify_registration(
    credential: dict[str, Any], challenge: bytes, rp_id: str, origins: list[str], require_uv: bool
) -> VerifiedRegistration:
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
