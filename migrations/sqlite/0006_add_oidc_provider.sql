-- The OpenID Connect provider (OIDC.md). Codes and tokens are kept only as hashes.

-- Clients made through the admin API (those of the config file live there).
CREATE TABLE oidc_clients (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  BLOB,                               -- SHA-256 of the secret; NULL for a public client
    settings     TEXT NOT NULL,                      -- JSON: the other fields of [[oidc.clients]]
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- An authorization: what one code redemption started (its tokens, refreshes included).
-- Ending it (or the browser session `session_id` it rides on) ends every token issued from it.
CREATE TABLE oidc_grants (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id      TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    amr             TEXT NOT NULL,                   -- JSON list
    auth_time       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,                  -- its refresh tokens live no longer
    revoked_at      INTEGER,
    revoked_reason  TEXT
);
CREATE INDEX oidc_grants_by_session ON oidc_grants (session_id);
CREATE INDEX oidc_grants_by_user_client ON oidc_grants (user_id, client_id);

-- Authorization codes: single use; `grant_id` is set when one is redeemed, so a second use
-- finds the grant to revoke.
CREATE TABLE oidc_codes (
    code_hash              BLOB PRIMARY KEY,
    client_id              TEXT NOT NULL,
    user_id                TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id             TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    redirect_uri           TEXT NOT NULL,
    scope                  TEXT NOT NULL,
    nonce                  TEXT,
    code_challenge         TEXT,
    code_challenge_method  TEXT,
    amr                    TEXT NOT NULL,
    auth_time              INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    expires_at             INTEGER NOT NULL,
    grant_id               TEXT
);
CREATE INDEX oidc_codes_by_expiry ON oidc_codes (expires_at);

-- Refresh tokens: each rotation marks the old one; presenting a rotated one revokes the grant.
CREATE TABLE oidc_refresh_tokens (
    token_hash  BLOB PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    rotated_at  INTEGER
);
CREATE INDEX oidc_refresh_tokens_by_grant ON oidc_refresh_tokens (grant_id);

-- Access tokens (JWTs) by their jti: userinfo and introspection ask whether one is revoked.
CREATE TABLE oidc_access_tokens (
    jti         TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX oidc_access_tokens_by_grant ON oidc_access_tokens (grant_id);

-- What a user allowed a client: the scopes, space-separated and sorted.
CREATE TABLE oidc_consents (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE user_groups (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_name  TEXT NOT NULL,
    PRIMARY KEY (user_id, group_name)
);

-- ID tokens are signed with RS256 by default: signing_keys takes RSA keys. SQLite cannot change
-- a CHECK constraint, so the table is made again with its rows.
CREATE TABLE signing_keys_new (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL CHECK (algorithm IN ('ES256', 'EdDSA', 'RS256')),
    private_key TEXT NOT NULL,                     -- PEM
    public_jwk  TEXT NOT NULL,                     -- JSON, served at /.well-known/jwks.json
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER,                           -- stopped signing; published until its tokens expire
    signs_from  INTEGER
);
INSERT INTO signing_keys_new (kid, algorithm, private_key, public_jwk, created_at, retired_at, signs_from)
SELECT kid, algorithm, private_key, public_jwk, created_at, retired_at, signs_from FROM signing_keys;
DROP TABLE signing_keys;
ALTER TABLE signing_keys_new RENAME TO signing_keys;

-- Recorded here too, so `sqlite3 auth.db < migrations/0006_add_oidc_provider.sql` leaves a database the server accepts.
INSERT OR IGNORE INTO schema_migrations (version, name, checksum, applied_at)
VALUES (6, 'add_oidc_provider', 'by-hand', CAST(strftime('%s', 'now') AS INTEGER));
