"""The hand-rolled access-token verifier (passwordless.keys.signer.Signer.verify) against PyJWT's
jwt.decode with the same rules: the algorithm pinned, the key chosen by `kid` among the server's
keys, `typ` = at+jwt, `iss`, `aud`, `exp` (and `nbf` if present), every required claim. On every
token below, valid or forged, both must agree on accept/refuse, and on the claims when they accept.
The verifier is a speed-up (it skips jwt.decode's per-call parsing); this is what keeps it from
being a weaker check than the library it replaced."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from passwordless.keys.signer import (
    REQUIRED_CLAIMS,
    TOKEN_TYPE,
    AccessClaims,
    InvalidAccessToken,
    Signer,
    generate_key,
)
from passwordless.platform.crypto import hs256_key

ISSUER = "https://auth.example.test"
AUDIENCE = "example-api"
SECRET = "differential-test-secret-" + "x" * 32
TTL = 900
ALGORITHMS = ("HS256", "ES256", "EdDSA")


@dataclass
class Setup:
    """A server's signer for one algorithm, and what a forger or PyJWT needs to make tokens."""

    algorithm: str
    signer: Signer
    kid: str
    signing_key: Any  # what jwt.encode signs with: the secret or the private PEM
    verifying_keys: dict[str, Any]  # kid -> what jwt.decode verifies with
    other_key: Any  # a key of the same algorithm the server does not know
    public_pem: bytes  # the public key, for the alg-switch attack (HS256 keyed with it)


def make_setup(algorithm: str) -> Setup:
    signer = Signer(algorithm=algorithm, secret=SECRET, issuer=ISSUER, audience=AUDIENCE, access_ttl=TTL)
    if algorithm == "HS256":
        kid = str(jwt.get_unverified_header(issue(signer))["kid"])
        key = hs256_key(SECRET)  # what relying apps verify with (`passwordless keys hs256-key`)
        return Setup(algorithm, signer, kid, key, {kid: key}, "another-secret-" + "y" * 32, key.encode())
    key, other = generate_key(algorithm, time.time()), generate_key(algorithm, time.time())
    signer.use_keys([key])
    public = jwt.PyJWK(key.public_jwk, algorithm).key
    public_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Setup(algorithm, signer, key.kid, key.private_pem, {key.kid: public}, other.private_pem, public_pem)


def issue(signer: Signer, now: float | None = None) -> str:
    moment = time.time() if now is None else now
    return signer.issue(
        user_id="user-1", session_id="session-1", email="a@example.com", amr=["email"], auth_time=int(moment),
        now=moment,
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-2", "sid": "session-2", "email": "b@example.com",
            "amr": ["otp"], "iat": now, "exp": now + TTL, "jti": secrets.token_hex(8)}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(s: Setup, payload: dict[str, Any], key: Any = None, **header: Any) -> str:
    """A token signed with the server's own key (or `key`), with header fields changed."""
    fields = {"kid": s.kid, "typ": TOKEN_TYPE, **header}
    return jwt.encode(payload, s.signing_key if key is None else key, algorithm=s.algorithm,
                      headers={k: v for k, v in fields.items() if v is not None})


def with_header(token: str, **changes: Any) -> str:
    """The token with its header segment changed and its signature kept."""
    header_segment, payload, signature = token.split(".")
    header = {**json.loads(unb64(header_segment)), **changes}
    return ".".join([b64(json.dumps(header).encode()), payload, signature])


def with_payload(token: str, **changes: Any) -> str:
    header, payload_segment, signature = token.split(".")
    payload = {**json.loads(unb64(payload_segment)), **changes}
    return ".".join([header, b64(json.dumps(payload).encode()), signature])


def unsigned(s: Setup, alg: str, key: bytes | None) -> str:
    """alg none (no key) or HS256 keyed with bytes, e.g. the public key (the alg-switch attack)."""
    header = b64(json.dumps({"alg": alg, "kid": s.kid, "typ": TOKEN_TYPE}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims()).encode())}"
    mac = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


CASES: dict[str, Callable[[Setup], str]] = {
    "issued by the server": lambda s: issue(s.signer),
    "signed by PyJWT with the server's key": lambda s: signed(s, claims()),
    "aud as a list holding ours": lambda s: signed(s, claims(aud=["other", AUDIENCE])),
    "nbf in the past": lambda s: signed(s, claims(nbf=int(time.time()) - 60)),
    "alg none": lambda s: unsigned(s, "none", None),
    "alg none, header only": lambda s: unsigned(s, "none", None).rsplit(".", 1)[0] + ".",
    "alg switched to HS256 keyed with the public key": lambda s: unsigned(s, "HS256", s.public_pem),
    "header alg changed, signature kept": lambda s: with_header(issue(s.signer), alg="HS512"),
    "unknown kid": lambda s: signed(s, claims(), kid="not-a-key-of-ours"),
    "no kid": lambda s: signed(s, claims(), kid=None),
    "kid changed, signature kept": lambda s: with_header(issue(s.signer), kid="x" + s.kid),
    "extra header field, signature kept": lambda s: with_header(issue(s.signer), jku="https://evil.test/jwks"),
    "payload sub changed, signature kept": lambda s: with_payload(issue(s.signer), sub="admin"),
    "payload exp pushed out, signature kept": lambda s: with_payload(issue(s.signer), exp=int(time.time()) + 10**6),
    "signed with another key": lambda s: signed(s, claims(), key=s.other_key),
    "wrong iss": lambda s: signed(s, claims(iss="https://evil.test")),
    "wrong aud": lambda s: signed(s, claims(aud="another-api")),
    "aud list without ours": lambda s: signed(s, claims(aud=["another-api"])),
    "typ JWT": lambda s: signed(s, claims(), typ="JWT"),
    "typ missing": lambda s: signed(s, claims(), typ=None),
    "typ of an ID token": lambda s: signed(s, claims(), typ="id+jwt"),
    "expired": lambda s: issue(s.signer, now=time.time() - 2 * TTL),
    "expired, signed by PyJWT": lambda s: signed(s, claims(exp=int(time.time()) - 1)),
    "not valid yet (nbf)": lambda s: signed(s, claims(nbf=int(time.time()) + 600)),
    "exp missing": lambda s: signed(s, claims(exp=None)),
    "sid missing": lambda s: signed(s, claims(sid=None)),
    "jti missing": lambda s: signed(s, claims(jti=None)),
    "exp a string": lambda s: signed(s, claims(exp="9999999999")),
    "payload a JSON list": lambda s: signed(s, claims()).split(".")[0] + "." + b64(b"[1,2]") + ".AAAA",
    "truncated signature": lambda s: issue(s.signer)[:-6],
    "signature removed": lambda s: issue(s.signer).rsplit(".", 1)[0] + ".",
    "two segments": lambda s: issue(s.signer).rsplit(".", 1)[0],
    "half a token": lambda s: (lambda t: t[: len(t) // 2])(issue(s.signer)),
    "one extra segment": lambda s: issue(s.signer) + ".e30",
    "five segments (JWE-like)": lambda s: issue(s.signer) + ".AAAA.BBBB",
    "empty": lambda s: "",
    "dots only": lambda s: "..",
    "refresh-token-like": lambda s: secrets.token_urlsafe(32),
    "refresh-token-like with dots": lambda s: ".".join(secrets.token_urlsafe(16) for _ in range(3)),
    "not base64": lambda s: "!!!.@@@.###",
    "header not JSON": lambda s: b64(b"not json") + "." + issue(s.signer).split(".", 1)[1],
}
ACCEPTED = {"issued by the server", "signed by PyJWT with the server's key", "aud as a list holding ours",
            "nbf in the past"}
# The one deliberate difference: PyJWT takes an exp of "9999999999" (it calls int() on it); RFC 7519
# makes exp a NumericDate, a JSON number, and the server refuses anything else.
PYJWT_LAXER = {"exp a string"}


def ours(s: Setup, token: str) -> AccessClaims | None:
    try:
        return s.signer.verify(token, time.time())
    except InvalidAccessToken:
        return None


def reference(s: Setup, token: str) -> AccessClaims | None:
    """PyJWT with the rules API.md states: algorithm pinned, our kid, typ at+jwt, iss, aud, exp."""
    try:
        header = jwt.get_unverified_header(token)
        key = s.verifying_keys.get(header.get("kid", ""))
        if key is None or header.get("typ") != TOKEN_TYPE:
            return None
        c = jwt.decode(token, key, algorithms=[s.algorithm], issuer=ISSUER, audience=AUDIENCE,
                       options={"require": REQUIRED_CLAIMS})
    except jwt.PyJWTError:
        return None
    return AccessClaims(str(c["sub"]), str(c["sid"]), str(c.get("email", "")), tuple(c.get("amr", [])), c["exp"])


SETUPS: dict[str, Setup] = {}


def setup_for(algorithm: str) -> Setup:
    """One signer per algorithm for the whole module (its caches are part of what is tested)."""
    if algorithm not in SETUPS:
        SETUPS[algorithm] = make_setup(algorithm)
    return SETUPS[algorithm]


@pytest.fixture(params=ALGORITHMS)
def setup(request: pytest.FixtureRequest) -> Setup:
    return setup_for(str(request.param))


# With HS256 the "public key" is the secret itself: the alg-switch attack applies to key pairs only.
PAIRS = [(a, c) for a in ALGORITHMS for c in CASES if not (a == "HS256" and c.startswith("alg switched"))]


@pytest.mark.parametrize(("algorithm", "case"), PAIRS)
def test_hand_rolled_verifier_agrees_with_pyjwt(algorithm: str, case: str) -> None:
    s = setup_for(algorithm)
    token = CASES[case](s)
    expected = reference(s, token)
    assert (expected is not None) == (case in ACCEPTED | PYJWT_LAXER), f"PyJWT itself: {case!r} {expected}"
    if case in PYJWT_LAXER:
        expected = None
    assert ours(s, token) == expected
    assert ours(s, token) == expected  # again: the second answer comes from the verifier's caches


def test_a_token_accepted_then_expired_is_refused_by_both(setup: Setup) -> None:
    """The verified-token cache must not outlive exp: checked with a clock moved past it."""
    token = issue(setup.signer, now=time.time() - TTL + 2)
    assert ours(setup, token) == reference(setup, token) is not None
    with pytest.raises(InvalidAccessToken):
        setup.signer.verify(token, time.time() + 5)
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, setup.verifying_keys[setup.kid], algorithms=[setup.algorithm], issuer=ISSUER,
                   audience=AUDIENCE, options={"require": REQUIRED_CLAIMS}, leeway=-5)


def test_a_key_of_another_algorithm_is_refused_by_both() -> None:
    """An ES256 server never accepts an EdDSA token signed by a key it does not publish, nor an
    HS256 server a token of the ES256 one, even when the kid is copied."""
    es, ed, hs = make_setup("ES256"), make_setup("EdDSA"), make_setup("HS256")
    for verifier, forger in ((es, ed), (ed, es), (hs, es), (es, hs)):
        token = signed(forger, claims(), kid=verifier.kid)
        assert ours(verifier, token) is None and reference(verifier, token) is None

