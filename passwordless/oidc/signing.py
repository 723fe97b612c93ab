"""The keys the provider signs with: RS256 by default, ES256 or EdDSA per client, all kept in
signing_keys (keys/) and published in the JWKS. joserfc signs and verifies."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeyParameters, KeySet, OKPKey, RSAKey

from passwordless.keys import service as keys
from passwordless.keys.signer import SigningKey
from passwordless.platform.db.types import Connection

ACCESS_TYPE = "at+jwt"
KEEP_PUBLISHED = 2 * 86400  # a retired key verifies what it signed (tokens live far less)


@lru_cache(maxsize=64)
def _private(kid: str, algorithm: str, pem: str) -> Any:
    parameters: KeyParameters = {"kid": kid, "alg": algorithm, "use": "sig"}
    if algorithm == "RS256":
        return RSAKey.import_key(pem, parameters)
    if algorithm == "ES256":
        return ECKey.import_key(pem, parameters)
    return OKPKey.import_key(pem, parameters)


def signing_key(published: Sequence[SigningKey], algorithm: str, now: float) -> Any:
    """The newest key of `algorithm` whose time to sign has come (like keys/signer.py)."""
    live = [k for k in published if k.algorithm == algorithm and (k.retired_at is None or now < k.retired_at)]
    if not live:
        raise LookupError(f"no {algorithm} signing key")
    live.sort(key=lambda k: (k.signs_from, k.created_at, k.kid))
    started = [k for k in live if k.signs_from <= now]
    chosen = started[-1] if started else live[0]
    return _private(chosen.kid, chosen.algorithm, chosen.private_pem)


def published(conn: Connection, now: float) -> list[SigningKey]:
    return keys.published(conn, now, KEEP_PUBLISHED)


def sign(key: Any, algorithm: str, claims: dict[str, Any], typ: str | None = None) -> str:
    header = {"alg": algorithm, "kid": key.kid, **({"typ": typ} if typ else {})}
    return jwt.encode(header, claims, key, algorithms=[algorithm])


def verify_access_token(published_keys: Sequence[SigningKey], token: str, issuer: str, now: float) -> dict[str, Any] | None:
    """The claims of an access token this provider signed (typ at+jwt, our issuer, not
    expired); None for anything else. Whether it is revoked is the caller's question."""
    if len(token) > 8192 or not token.isascii():
        return None
    key_set = KeySet.import_key_set({"keys": [k.public_jwk for k in published_keys]})
    try:
        decoded = jwt.decode(token, key_set, algorithms=["RS256", "ES256", "EdDSA"])
    except (JoseError, ValueError, TypeError):
        return None
    claims = decoded.claims
    if decoded.header.get("typ") != ACCESS_TYPE or claims.get("iss") != issuer:
        return None
    exp, client_id = claims.get("exp"), claims.get("client_id")
    if not isinstance(exp, int) or exp <= now or not isinstance(client_id, str) or claims.get("aud") != client_id:
        return None
    if client_id == "passwordless" or not isinstance(claims.get("jti"), str) or not isinstance(claims.get("sub"), str):
        return None
    return dict(claims)


def verify_id_token_hint(published_keys: Sequence[SigningKey], token: str, issuer: str) -> dict[str, Any] | None:
    """The claims of an ID token this provider signed, expired or not (RP-Initiated Logout: an
    expired id_token_hint still names the client and the user); None for anything else."""
    if not token or len(token) > 8192 or not token.isascii():
        return None
    key_set = KeySet.import_key_set({"keys": [k.public_jwk for k in published_keys]})
    try:
        decoded = jwt.decode(token, key_set, algorithms=["RS256", "ES256", "EdDSA"])
    except (JoseError, ValueError, TypeError):
        return None
    claims, typ = decoded.claims, decoded.header.get("typ")
    if typ not in (None, "JWT") or claims.get("iss") != issuer or not isinstance(claims.get("sub"), str):
        return None
    aud = claims.get("aud")
    if not (isinstance(aud, str) or (isinstance(aud, list) and len(aud) == 1 and isinstance(aud[0], str))):
        return None
    return {**claims, "aud": aud if isinstance(aud, str) else aud[0]}
