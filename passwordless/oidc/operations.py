"""The provider's endpoints in the OpenAPI document (OIDC.md): form-encoded requests, the answers
the standards set (OAuth's own error body, redirects, the pages a browser sees) and the JSON of
discovery, tokens, userinfo and introspection. The consent form POST /oauth2/authorize/consent is
a page of ours posting to itself, not an integrator's call: not listed."""

from __future__ import annotations

from passwordless.web.openapi import (
    BEARER,
    CLIENT,
    FORM,
    JSON,
    NONE,
    Answer,
    Op,
    Schema,
    array,
    integer,
    obj,
    ref,
    string,
)

# OAuth's parameters are printable ASCII (RFC 6749 Appendix A, VSCHAR); the lengths are generous
# for real clients and keep a request line within what the HTTP server reads (16 KiB).


def _ascii(most: int) -> Schema:
    return string(maxLength=most, pattern="^[\\x20-\\x7E]*$")


_TEXT = _ascii(512)
_HTML = {"text/html": string()}

# RFC 6749 §5.2; the answer of API.md's shape stays possible for a 400 where the provider cannot
# run at all (an http public_url other than localhost: `insecure_transport`).
OAUTH_ERROR = obj({"error": string(), "error_description": string(), "error_uri": string()}, required=["error"])
_OAUTH_400 = Answer(
    "The request is invalid (`invalid_request`, `invalid_grant`, `unsupported_grant_type`, `invalid_scope`, ...).",
    {JSON: {"anyOf": [OAUTH_ERROR, ref("Error")]}},
)
_NO_TOKEN = Answer("No `token` (`invalid_request`).", {JSON: {"anyOf": [OAUTH_ERROR, ref("Error")]}})
_INVALID_CLIENT = Answer(
    "Client authentication failed (`invalid_client`).", {JSON: OAUTH_ERROR},
    {"WWW-Authenticate": "Basic realm=\"oauth2\""},
)
_INVALID_TOKEN = Answer(
    "The access token is missing, invalid, expired or revoked (`invalid_token`).",
    {JSON: OAUTH_ERROR}, {"WWW-Authenticate": "Bearer error=\"invalid_token\""},
)
_OFF = (404,)  # the provider is off (no client): every endpoint answers API.md's 404


def _redirect(where: str) -> Answer:
    return Answer(where, headers={"Location": "Where the browser goes next."})


_AUTHORIZE_FIELDS: dict[str, Schema] = {
    "response_type": _ascii(32), "client_id": _ascii(128), "redirect_uri": _TEXT, "scope": _ascii(256),
    "state": _TEXT, "nonce": _ascii(256), "code_challenge": _ascii(128), "code_challenge_method": _ascii(16),
    "prompt": _ascii(32), "max_age": _ascii(10), "login_hint": _ascii(256), "response_mode": _ascii(16),
}
_AUTHORIZE = {
    200: Answer("The consent page, or (response_mode=form_post) the page that posts the answer to the client.", _HTML),
    400: Answer(
        "An unknown client_id or a redirect_uri not registered for it: an HTML page, never a redirect.",
        {**_HTML, JSON: ref("Error")},
    ),
    403: Answer("This user may not use the client (allowed_emails, allowed_groups): an HTML page.", _HTML),
}
_SIGN_IN = "to the sign-in page when the browser has no usable session"
_BACK = (
    "to the client's redirect_uri with `code`, `state` and `iss`, or with `error` (`login_required`, "
    "`consent_required`, `access_denied`, `invalid_request`, ...), `state` and `iss`"
)

_CLIENT_FIELDS: dict[str, Schema] = {"client_id": _ascii(128), "client_secret": _ascii(256)}
_TOKEN_BODY = obj({
    "grant_type": _ascii(64), "code": _ascii(256), "redirect_uri": _TEXT, "code_verifier": _ascii(128),
    "refresh_token": _ascii(256), "scope": _ascii(256), **_CLIENT_FIELDS,
}, required=["grant_type"], closed=False)
TOKEN = obj({
    "access_token": string(), "token_type": string(enum=["Bearer"]), "expires_in": integer(), "scope": string(),
    "id_token": string(), "refresh_token": string(),
}, required=["access_token", "token_type", "expires_in"])
USERINFO = obj(
    {"sub": string(), "email": string(), "email_verified": {"type": "boolean"}, "groups": array(string())},
    required=["sub"],
)
INTROSPECTION = obj(
    {"active": {"type": "boolean"}, "token_type": string(), "client_id": string(), "sub": string(), "scope": string(),
     "exp": integer(), "iat": integer(), "iss": string(), "aud": {"anyOf": [string(), array(string())]}},
    required=["active"], closed=False,
)
_TOKEN_FIELD = obj({"token": _ascii(4096), "token_type_hint": _ascii(64), **_CLIENT_FIELDS},
                   required=["token"], closed=False)
_LOGOUT_FIELDS: dict[str, Schema] = {
    "id_token_hint": string(maxLength=4096, pattern="^[A-Za-z0-9._-]*$"), "post_logout_redirect_uri": _TEXT,
    "state": _TEXT, "client_id": _ascii(128),
}
_LOGOUT = {
    200: Answer(
        "A page: the confirmation (no valid id_token_hint for the signed-in user) or the signed-out page.", _HTML
    ),
    400: Answer("A client_id that is not the one the id_token_hint was issued to: an HTML page.",
                {**_HTML, JSON: ref("Error")}),
}
_LOGOUT_REDIRECT = _redirect("Signed out: to the post_logout_redirect_uri registered for the client, with `state`.")

_URL = string(format="uri")
DISCOVERY = obj({
    "issuer": _URL, "authorization_endpoint": _URL, "token_endpoint": _URL, "userinfo_endpoint": _URL,
    "revocation_endpoint": _URL, "introspection_endpoint": _URL, "end_session_endpoint": _URL, "jwks_uri": _URL,
    **{name: array(string()) for name in (
        "scopes_supported", "response_types_supported", "response_modes_supported", "grant_types_supported",
        "subject_types_supported", "id_token_signing_alg_values_supported", "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported",
        "code_challenge_methods_supported", "claims_supported", "prompt_values_supported",
    )},
    **{name: {"type": "boolean"} for name in (
        "authorization_response_iss_parameter_supported", "backchannel_logout_supported",
        "backchannel_logout_session_supported",
    )},
}, closed=False)

_DISCOVERY_OP = Op(
    "The provider's metadata (OpenID Connect Discovery; RFC 8414); 404 while no client exists.", {200: DISCOVERY},
    errors=_OFF, tag="oidc",
)
operations = {
    ("GET", "/.well-known/openid-configuration"): _DISCOVERY_OP,
    ("GET", "/.well-known/oauth-authorization-server"): _DISCOVERY_OP,
    ("GET", "/oauth2/authorize"): Op(
        "Authorization request (code flow, PKCE S256): signs the browser in, asks consent, redirects back.",
        {302: _redirect(f"Back {_BACK}."), 303: _redirect(f"On {_SIGN_IN}."), **_AUTHORIZE},
        query=_AUTHORIZE_FIELDS, errors=_OFF, tag="oidc",
    ),
    ("POST", "/oauth2/authorize"): Op(
        "The authorization request as a form post.",
        {303: _redirect(f"On {_SIGN_IN}, else back {_BACK}."), **_AUTHORIZE},
        body=obj(_AUTHORIZE_FIELDS, required=(), closed=False), body_media_type=FORM, errors=_OFF, tag="oidc",
    ),
    ("POST", "/oauth2/token"): Op(
        "Redeem a code or a refresh token (client_secret_basic, client_secret_post, or none for public clients).",
        {200: TOKEN, 400: _OAUTH_400, 401: _INVALID_CLIENT}, body=_TOKEN_BODY, body_media_type=FORM,
        security=(CLIENT, NONE), errors=_OFF, tag="oidc",
    ),
    ("GET", "/oauth2/userinfo"): Op(
        "The claims of the access token's scopes.", {200: USERINFO, 401: _INVALID_TOKEN}, security=(BEARER,),
        errors=(*_OFF, 400), tag="oidc",
    ),
    ("POST", "/oauth2/userinfo"): Op(
        "The claims of the access token's scopes (the token in the header, or the access_token form field).",
        {200: USERINFO, 401: _INVALID_TOKEN}, body=obj({"access_token": _ascii(4096)}, required=()),
        body_optional=True, body_media_type=FORM, security=(BEARER, NONE), errors=_OFF, tag="oidc",
    ),
    ("POST", "/oauth2/revoke"): Op(
        "Revoke a refresh token (its whole grant) or an access token (RFC 7009); 200 for an unknown token too.",
        {200: None, 400: _NO_TOKEN, 401: _INVALID_CLIENT}, body=_TOKEN_FIELD, body_media_type=FORM,
        security=(CLIENT, NONE), errors=_OFF, tag="oidc",
    ),
    ("POST", "/oauth2/introspect"): Op(
        "Whether a token is active, and its claims (RFC 7662; confidential clients only).",
        {200: INTROSPECTION, 400: _NO_TOKEN, 401: _INVALID_CLIENT}, body=_TOKEN_FIELD, body_media_type=FORM,
        security=(CLIENT, NONE), errors=_OFF, tag="oidc",
    ),
    ("GET", "/oauth2/logout"): Op(
        "RP-initiated logout: ends the browser's session.", {302: _LOGOUT_REDIRECT, **_LOGOUT},
        query=_LOGOUT_FIELDS, errors=_OFF, tag="oidc",
    ),
    ("POST", "/oauth2/logout"): Op(
        "RP-initiated logout as a form post (the confirmation page posts it with confirm=yes, Origin-checked).",
        {303: _LOGOUT_REDIRECT, **_LOGOUT},
        body=obj({**_LOGOUT_FIELDS, "confirm": string(enum=["yes"])}, required=(), closed=False),
        body_optional=True, body_media_type=FORM, errors=(*_OFF, 403), tag="oidc",
    ),
}
