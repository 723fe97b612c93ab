"""Access tokens: JWTs signed with HS256 (jwt.secret) or with ES256 / EdDSA keys kept in the
database and published as a JWKS. Verification pins the algorithm and checks typ, iss, aud and
exp, so a token of another kind, another algorithm or another issuer is never accepted."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from passwordless.crypto import b64url, from_b64url, new_id

TOKEN_TYPE = "at+jwt"
CLIENT_ID = "passwordless"  # RFC 9068 client_id of tokens from this API (OIDC issues others)
REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "exp", "iat", "jti"]
VERIFIED_TOKENS_KEPT = 10_000  # about 5 MB at most


class InvalidAccessToken(Exception):
    """The token is not a valid, current access token of this server."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_pem: str
    public_jwk: dict[str, Any]
    created_at: int
    retired_at: int | None = None


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str
    email: str
    amr: tuple[str, ...]
    expires_at: int


def generate_key(algorithm: str, now: float) -> SigningKey:
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ES256":
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
    return SigningKey(kid, algorithm, pem, jwk, int(now))


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
        self._signing: tuple[str, Any] = ("", None)
        self._signing_header = ""
        self._verifying: dict[str, Any] = {}
        self._headers: dict[str, Any] = {}  # header segments seen to name a key of ours → that key
        self._verified: dict[str, AccessClaims] = {}
        self._jwks: list[dict[str, Any]] = []
        if algorithm == "HS256":
            kid = "hs256-" + hashlib.sha256(secret.encode()).hexdigest()[:16]
            key = self._algorithm.prepare_key(secret.encode())
            self._sign_with(kid, key)
            self._verifying = {kid: key}

    def use_keys(self, keys: Sequence[SigningKey]) -> None:
        """Sign with the newest unretired key; verify with every published one."""
        mine = [k for k in keys if k.algorithm == self.algorithm]
        current = [k for k in mine if k.retired_at is None]
        if not current:
            raise ValueError(f"no current {self.algorithm} signing key")
        newest = max(current, key=lambda k: (k.created_at, k.kid))
        self._sign_with(newest.kid, serialization.load_pem_private_key(newest.private_pem.encode(), None))
        self._verifying = {k.kid: jwt.PyJWK(k.public_jwk, self.algorithm).key for k in mine}
        self._headers, self._verified = {}, {}
        self._jwks = [k.public_jwk for k in mine]

    def _sign_with(self, kid: str, key: Any) -> None:
        header = {"alg": self.algorithm, "kid": kid, "typ": TOKEN_TYPE}
        self._signing = (kid, key)
        self._signing_header = b64url(json.dumps(header, separators=(",", ":")).encode())

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
        signing_input = f"{self._signing_header}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        signature = self._algorithm.sign(signing_input.encode(), self._signing[1])
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
        signing_input, _, signature = token.rpartition(".")
        header, _, payload = signing_input.partition(".")
        try:
            key = self._key_for(header)
            if not self._algorithm.verify(signing_input.encode(), key, from_b64url(signature)):
                raise InvalidAccessToken("bad signature")
            claims = json.loads(from_b64url(payload))
        except (ValueError, TypeError) as exc:  # bad base64, JSON or signature encoding
            raise InvalidAccessToken(str(exc)) from None
        return self._checked(claims, now)

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
        audience = claims["aud"]
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
            str(claims["sub"]), str(claims["sid"]), str(claims.get("email", "")),
            tuple(str(a) for a in amr) if isinstance(amr, list) else (), expires_at,
        )
