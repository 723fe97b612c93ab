"""Access tokens: JWTs signed with HS256 (jwt.secret) or with ES256 / EdDSA keys kept in the
database and published as a JWKS. Verification pins the algorithm and checks typ, iss, aud and
exp, so a token of another kind, another algorithm or another issuer is never accepted."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from passwordless.platform.crypto import HS256_KID, b64url, from_b64url, hs256_key, new_id, subkey

TOKEN_TYPE = "at+jwt"
CLIENT_ID = "passwordless"  # RFC 9068 client_id of tokens from this API (OIDC issues others)
REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "exp", "iat", "jti"]
VERIFIED_TOKENS_KEPT = 10_000  # about 5 MB at most
# Our tokens are well under 2 KB and their header under 100 characters; anything much longer is
# refused before any decoding, so no one makes the server decode (or nest) megabytes.
MAX_TOKEN_CHARS = 8192
MAX_HEADER_CHARS = 512
# What decoding base64 and JSON from anyone may raise: bad base64 (binascii.Error is a
# ValueError), bad UTF-8 (UnicodeDecodeError, a ValueError), bad JSON, nesting deeper than
# the interpreter's stack (RecursionError), numbers out of range (OverflowError), wrong types.
DECODING_ERRORS = (ValueError, TypeError, RecursionError, OverflowError)
RSA_BITS = 2048


class InvalidAccessToken(Exception):
    """The token is not a valid, current access token of this server."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_pem: str
    public_jwk: dict[str, Any]
    created_at: int
    signs_from: int  # published from created_at, signs from here (`keys rotate` waits for caches)
    retired_at: int | None = None  # signs nothing from here; published until its tokens expire


@dataclass(frozen=True)
class _Signing:
    """The key tokens are signed with, and the span of time in which it is the one to use."""

    kid: str
    key: Any
    header: str  # base64url of the JOSE header naming it
    since: float
    until: float


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str
    email: str
    amr: tuple[str, ...]
    expires_at: int


def generate_key(algorithm: str, now: float, signs_from: float | None = None) -> SigningKey:
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "RS256":  # ID tokens of the OpenID Connect provider (OIDC.md)
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    else:
        raise ValueError(f"no key pair for {algorithm}")
    kid = new_id()
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(kid, algorithm, pem, jwk, int(now), int(now if signs_from is None else signs_from))


class Signer:
    """Signs and verifies access tokens with PyJWT's algorithm objects, the token's three
    segments handled here: jwt.encode and jwt.decode re-parse the header, re-check the key's
    form and merge options on every call, which cost more than the signature itself."""

    def __init__(
        self, *, algorithm: str, secret: str, issuer: str, audience: str, access_ttl: float
    ) -> None:
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = int(access_ttl)
        self._algorithm = jwt.get_algorithm_by_name(algorithm)
        self._keys: list[SigningKey] = []
        self._signing = _Signing("", None, "", 0.0, 0.0)
        self._verifying: dict[str, Any] = {}
        self._headers: dict[str, Any] = {}  # header segments seen to name a key of ours → that key
        self._verified: dict[str, AccessClaims] = {}
        self._jwks: list[dict[str, Any]] = []
        if algorithm == "HS256":
            # The kid names the key without revealing it: derived under its own label, it is
            # independent of the signing key (and of every other key made from the secret)
            # yet stays the same on every server sharing jwt.secret and changes with it.
            kid = "hs256-" + b64url(subkey(secret, HS256_KID))[:16]
            key = self._algorithm.prepare_key(hs256_key(secret).encode())
            self._signing = self._sign_with(kid, key, -math.inf, math.inf)
            self._verifying = {kid: key}

    def use_keys(self, keys: Sequence[SigningKey]) -> None:
        """Verify with every published key; sign, at each moment, with the newest key whose
        time to sign has come (see _signing_at)."""
        self._jwks = [k.public_jwk for k in keys]  # every published key: the OIDC provider's too
        if self.algorithm == "HS256":
            return
        mine = [k for k in keys if k.algorithm == self.algorithm]
        if not any(k.retired_at is None for k in mine):
            raise ValueError(f"no current {self.algorithm} signing key")
        self._keys = sorted(mine, key=lambda k: (k.signs_from, k.created_at, k.kid))
        self._signing = _Signing("", None, "", 0.0, 0.0)  # chosen again at the next token
        self._verifying = {k.kid: jwt.PyJWK(k.public_jwk, self.algorithm).key for k in mine}
        self._headers, self._verified = {}, {}

    def _signing_at(self, now: float) -> _Signing:
        """The key to sign with now. The choice only changes when a key starts or stops signing,
        so it is kept until the next such moment: a running server switches to a rotated key
        at the very second it was given, without waiting for its next reload."""
        if not self._signing.since <= now < self._signing.until:
            live = [k for k in self._keys if k.retired_at is None or now < k.retired_at]
            started = [k for k in live if k.signs_from <= now]
            chosen = started[-1] if started else live[0]  # live[0]: a clock before every key's start
            moments = [t for k in self._keys for t in (k.signs_from, k.retired_at) if t is not None]
            since = max((t for t in moments if t <= now), default=-math.inf)
            until = min((t for t in moments if t > now), default=math.inf)
            private = serialization.load_pem_private_key(chosen.private_pem.encode(), None)
            self._signing = self._sign_with(chosen.kid, private, since, until)
        return self._signing

    def _sign_with(self, kid: str, key: Any, since: float, until: float) -> _Signing:
        header = {"alg": self.algorithm, "kid": kid, "typ": TOKEN_TYPE}
        return _Signing(kid, key, b64url(json.dumps(header, separators=(",", ":")).encode()), since, until)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {"keys": list(self._jwks)}

    def issue(
        self, *, user_id: str, session_id: str, email: str, amr: Sequence[str], auth_time: int, now: float
    ) -> str:
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "sid": session_id,
            "email": email,
            "amr": list(amr),
            "iat": int(now),
            "exp": int(now) + self.access_ttl,
            "jti": new_id(),
            "client_id": CLIENT_ID,
            "auth_time": auth_time,
        }
        signing = self._signing_at(now)
        signing_input = f"{signing.header}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        signature = self._algorithm.sign(signing_input.encode(), signing.key)
        return f"{signing_input}.{b64url(signature)}"

    def verify(self, token: str, now: float) -> AccessClaims:
        """The claims of a valid, current access token. A client sends the same token with each
        request until it expires, so tokens whose signature checked out are remembered (a
        bounded number, forgotten when the keys change); expiry is checked on every use."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify_signature_and_claims(token, now)
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.clear()
            self._verified[token] = claims
        elif claims.expires_at <= now:
            raise InvalidAccessToken("expired")
        return claims

    def _verify_signature_and_claims(self, token: str, now: float) -> AccessClaims:
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidAccessToken("not a token of this server")
        signing_input, _, signature = token.rpartition(".")
        header, _, payload = signing_input.partition(".")
        if len(header) > MAX_HEADER_CHARS:
            raise InvalidAccessToken("header too long")
        try:
            key = self._key_for(header)
            if not self._algorithm.verify(signing_input.encode(), key, from_b64url(signature)):
                raise InvalidAccessToken("bad signature")
            return self._checked(json.loads(from_b64url(payload)), now)
        except DECODING_ERRORS:
            raise InvalidAccessToken("malformed") from None

    def _key_for(self, header: str) -> Any:
        """The key a header segment names, if it is one of ours for our algorithm and says the
        token is an access token. Tokens of one key share one header segment, so the answer
        is kept (a bounded number: anyone may send variations)."""
        key = self._headers.get(header)
        if key is not None:
            return key
        fields = json.loads(from_b64url(header))
        if not isinstance(fields, dict) or fields.get("alg") != self.algorithm or fields.get("typ") != TOKEN_TYPE:
            raise InvalidAccessToken("not an access token of this server's algorithm")
        kid = fields.get("kid")
        key = self._verifying.get(kid) if isinstance(kid, str) else None
        if key is None or fields.get("crit") is not None:
            raise InvalidAccessToken("unknown key")
        if len(self._headers) >= 16:
            self._headers.clear()
        self._headers[header] = key
        return key

    def _checked(self, claims: object, now: float) -> AccessClaims:
        if not isinstance(claims, dict) or any(name not in claims for name in REQUIRED_CLAIMS):
            raise InvalidAccessToken("missing claims")
        if not isinstance(claims["sub"], str) or not isinstance(claims["sid"], str):
            raise InvalidAccessToken("sub and sid must be strings")
        audience = claims["aud"]
        if claims.get("client_id", CLIENT_ID) != CLIENT_ID:
            raise InvalidAccessToken("an access token of another client (the OIDC provider's)")
        if claims["iss"] != self.issuer or not (
            audience == self.audience or (isinstance(audience, list) and self.audience in audience)
        ):
            raise InvalidAccessToken("another issuer or audience")
        expires_at = claims["exp"]
        if not isinstance(expires_at, int) or isinstance(expires_at, bool) or expires_at <= now:
            raise InvalidAccessToken("expired")
        not_before = claims.get("nbf")
        if not_before is not None and (not isinstance(not_before, (int, float)) or not_before > now):
            raise InvalidAccessToken("not valid yet")
        amr = claims.get("amr", [])
        return AccessClaims(
            claims["sub"], claims["sid"], str(claims.get("email", "")),
            tuple(str(a) for a in amr) if isinstance(amr, list) else (), expires_at,
        )
