"""A software WebAuthn authenticator (and the bit of browser around it) for tests without a
browser: P-256 ECDSA keys from `cryptography`, CBOR from `cbor2`.

`make_credential` answers creation options as `navigator.credentials.create()` would, and
`get_assertion` answers request options as `navigator.credentials.get()` would; both return the
credential JSON that a browser's `credential.toJSON()` gives. Every part a server checks can be
bent through keyword arguments: the flags, the sign count, the RP ID that is hashed, the origin,
type, challenge and crossOrigin in clientDataJSON, the user handle, the signature.

Authenticator data = SHA-256(rp_id) | flags | sign count (4 bytes, big-endian)
    [| AAGUID (16) | credential id length (2) | credential id | COSE public key]  (registration)
Assertion signature = ECDSA-SHA256 over authenticator data | SHA-256(clientDataJSON)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

UP = 0x01  # user present
UV = 0x04  # user verified
BE = 0x08  # backup eligible
BS = 0x10  # backed up
AT = 0x40  # attested credential data included
ED = 0x80  # extension data included

ES256 = -7
AAGUID = bytes.fromhex("adce000235bcc60a648b0b25f1f05503")  # any 16 bytes; shown as a UUID by servers

_DEFAULT = object()  # "not given" for knobs where None means something (e.g. omit the user handle)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class NoCredential(Exception):
    """The authenticator holds no credential the request options allow (a browser's NotAllowedError)."""


class CredentialExcluded(Exception):
    """The authenticator holds a credential listed in excludeCredentials (a browser's InvalidStateError)."""


@dataclass
class Credential:
    id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    user_name: str
    sign_count: int
    resident: bool

    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {1: 2, 3: ES256, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )

    def spki(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def _options(options_json: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept the options themselves or the server's {"options": {...}} answer around them."""
    inner = options_json.get("options")
    return inner if isinstance(inner, Mapping) else options_json


def _flags(up: bool, uv: bool, be: bool, bs: bool, at: bool) -> int:
    return (UP if up else 0) | (UV if uv else 0) | (BE if be else 0) | (BS if bs else 0) | (AT if at else 0)


def client_data(kind: str, challenge: str, origin: str, **extra: Any) -> bytes:
    """clientDataJSON as a browser serialises it (type, challenge, origin, crossOrigin first)."""
    data: dict[str, Any] = {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
    data.update(extra)
    return json.dumps(data, separators=(",", ":")).encode()


class SoftAuthenticator:
    """A platform authenticator that keeps its credentials in memory (resident ones are found
    again for discoverable sign-in with an empty allowCredentials)."""

    def __init__(
        self, aaguid: bytes = AAGUID, transports: tuple[str, ...] = ("hybrid", "internal"),
        attachment: str = "platform",
    ) -> None:
        self.aaguid = aaguid
        self.transports = list(transports)
        self.attachment = attachment
        self.credentials: dict[bytes, Credential] = {}

    # --- navigator.credentials.create() -------------------------------------------------------

    def make_credential(
        self,
        options_json: Mapping[str, Any],
        origin: str,
        *,
        user_verified: bool = True,
        user_present: bool = True,
        backup_eligible: bool = False,
        backed_up: bool = False,
        flags: int | None = None,
        sign_count: int = 0,
        rp_id: str | None = None,
        client_data_type: str = "webauthn.create",
        challenge: str | None = None,
        credential_id: bytes | None = None,
        resident: bool | None = None,
        ignore_exclude: bool = False,
        cose_key: bytes | None = None,
        client_data_json: bytes | None = None,
        cross_origin: bool = False,
    ) -> dict[str, Any]:
        """The registration credential for creation options, as `credential.toJSON()` gives it.

        `credential_id` names the new credential; naming one this authenticator holds already
        answers with that same credential again (same key). `rp_id` is the RP ID hashed into the
        authenticator data (default: the options' rp.id). `flags` replaces the whole flags byte."""
        options = _options(options_json)
        rp = options["rp"]
        rp_id_used = rp_id if rp_id is not None else str(rp.get("id"))
        excluded = {b64url_decode(c["id"]) for c in options.get("excludeCredentials", [])}
        if not ignore_exclude and excluded & set(self.credentials):
            raise CredentialExcluded("this authenticator holds an excluded credential")

        if credential_id is not None and credential_id in self.credentials:
            credential = self.credentials[credential_id]
        else:
            selection = options.get("authenticatorSelection", {})
            wants_resident = selection.get("residentKey", "discouraged") in ("preferred", "required")
            credential = Credential(
                id=credential_id if credential_id is not None else os.urandom(32),
                key=ec.generate_private_key(ec.SECP256R1()),
                rp_id=str(rp.get("id")),
                user_handle=b64url_decode(options["user"]["id"]),
                user_name=str(options["user"].get("name", "")),
                sign_count=sign_count,
                resident=wants_resident if resident is None else resident,
            )
            self.credentials[credential.id] = credential

        flag_byte = flags if flags is not None else _flags(user_present, user_verified, backup_eligible, backed_up, True)
        auth_data = (
            hashlib.sha256(rp_id_used.encode()).digest()
            + bytes([flag_byte])
            + struct.pack(">I", sign_count)
            + self.aaguid
            + struct.pack(">H", len(credential.id))
            + credential.id
            + (cose_key if cose_key is not None else credential.cose_public_key())
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        cdj = client_data_json if client_data_json is not None else client_data(
            client_data_type, challenge if challenge is not None else str(options["challenge"]), origin,
            crossOrigin=cross_origin,
        )
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(cdj),
                "attestationObject": b64url(attestation),
                "authenticatorData": b64url(auth_data),
                "transports": list(self.transports),
                "publicKey": b64url(credential.spki()),
                "publicKeyAlgorithm": ES256,
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": self.attachment,
        }

    # --- navigator.credentials.get() ----------------------------------------------------------

    def find(self, options_json: Mapping[str, Any], rp_id: str | None = None) -> Credential:
        """The credential a get() would use: the newest allowed one, or with an empty
        allowCredentials the newest resident one for the RP."""
        options = _options(options_json)
        rp = rp_id if rp_id is not None else str(options.get("rpId"))
        allowed = [b64url_decode(c["id"]) for c in options.get("allowCredentials", [])]
        held = [c for c in self.credentials.values() if c.rp_id == rp]
        if allowed:
            candidates = [c for c in held if c.id in allowed]
        else:
            candidates = [c for c in held if c.resident]
        if not candidates:
            raise NoCredential("no credential for these options")
        return candidates[-1]

    def get_assertion(
        self,
        options_json: Mapping[str, Any],
        origin: str,
        *,
        credential_id: bytes | None = None,
        user_verified: bool = True,
        user_present: bool = True,
        backup_eligible: bool = False,
        backed_up: bool = False,
        flags: int | None = None,
        sign_count: int | None = None,
        rp_id: str | None = None,
        client_data_type: str = "webauthn.get",
        challenge: str | None = None,
        user_handle: Any = _DEFAULT,
        tamper_signature: bool = False,
        signature: bytes | None = None,
        client_data_json: bytes | None = None,
        cross_origin: bool = False,
    ) -> dict[str, Any]:
        """The assertion for request options, as `credential.toJSON()` gives it.

        `credential_id` picks a held credential regardless of allowCredentials. The sign count
        goes up by one per assertion unless `sign_count` sets it (and it is remembered).
        `user_handle`: bytes to send instead of the credential's, or None to send none.
        `tamper_signature` signs other data (a well-formed but wrong signature);
        `signature` replaces the signature bytes outright. `cross_origin` says the page that
        called get() sat in a cross-origin iframe (clientDataJSON crossOrigin: true)."""
        options = _options(options_json)
        if credential_id is not None:
            credential = self.credentials[credential_id]
        else:
            credential = self.find(options)
        credential.sign_count = credential.sign_count + 1 if sign_count is None else sign_count
        rp_id_used = rp_id if rp_id is not None else str(options.get("rpId", credential.rp_id))
        flag_byte = flags if flags is not None else _flags(user_present, user_verified, backup_eligible, backed_up, False)
        auth_data = (
            hashlib.sha256(rp_id_used.encode()).digest() + bytes([flag_byte]) + struct.pack(">I", credential.sign_count)
        )
        cdj = client_data_json if client_data_json is not None else client_data(
            client_data_type, challenge if challenge is not None else str(options["challenge"]), origin,
            crossOrigin=cross_origin,
        )
        signed = auth_data + hashlib.sha256(cdj).digest()
        if tamper_signature:
            signed = auth_data + hashlib.sha256(cdj + b" ").digest()
        sig = signature if signature is not None else credential.sign(signed)
        handle = credential.user_handle if user_handle is _DEFAULT else user_handle
        response: dict[str, Any] = {
            "clientDataJSON": b64url(cdj),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(sig),
        }
        if handle is not None:  # toJSON() leaves userHandle out when the authenticator gave none
            response["userHandle"] = b64url(handle) if isinstance(handle, bytes) else handle
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": self.attachment,
        }
