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

from passwordless.crypto import new_id

TOKEN_TYPE = "at+jwt"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "exp", "iat", "jti"]


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
    def __init__(
        self, *, algorithm: str, secret: str, issuer: str, audience: str, access_ttl: float
    ) -> None:
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = int(access_ttl)
        self._signing: tuple[str, Any] = ("", None)
        self._verifying: dict[str, Any] = {}
        self._jwks: list[dict[str, Any]] = []
        if algorithm == "HS256":
            kid = "hs256-" + hashlib.sha256(secret.encode()).hexdigest()[:16]
            self._signing = (kid, secret.encode())
            self._verifying = {kid: secret.encode()}

    def use_keys(self, keys: Sequence[SigningKey]) -> None:
        """Sign with the newest unretired key; verify with every published one."""
        mine = [k for k in keys if k.algorithm == self.algorithm]
        current = [k for k in mine if k.retired_at is None]
        if not current:
            raise ValueError(f"no current {self.algorithm} signing key")
        newest = max(current, key=lambda k: (k.created_at, k.kid))
        self._signing = (newest.kid, serialization.load_pem_private_key(newest.private_pem.encode(), None))
        self._verifying = {k.kid: jwt.PyJWK(k.public_jwk, self.algorithm).key for k in mine}
        self._jwks = [k.public_jwk for k in mine]

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {"keys": list(self._jwks)}

    def issue(self, *, user_id: str, session_id: str, email: str, amr: Sequence[str], now: float) -> str:
        kid, key = self._signing
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
        }
        return jwt.encode(claims, key, algorithm=self.algorithm, headers={"typ": TOKEN_TYPE, "kid": kid})

    def verify(self, token: str, now: float) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
            key = self._verifying.get(header.get("kid", ""))
            if key is None or header.get("typ") != TOKEN_TYPE:
                raise InvalidAccessToken("unknown key or not an access token")
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidAccessToken(str(exc)) from None
        if not isinstance(claims["exp"], int) or claims["exp"] <= now:
            raise InvalidAccessToken("expired")
        amr = claims.get("amr", [])
        return AccessClaims(
            str(claims["sub"]), str(claims["sid"]), str(claims.get("email", "")),
            tuple(str(a) for a in amr) if isinstance(amr, list) else (), claims["exp"],
        )
