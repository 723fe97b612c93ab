-- The OpenID Connect provider (OIDC.md). Codes and tokens are kept only as hashes.

-- Clients made through the admin API (those of the config file live there).
CREATE TABLE oidc_clients (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  BYTEA,                               -- SHA-256 of the secret; NULL for a public client
    settings     TEXT NOT NULL,                      -- JSON: the other fields of [[oidc.clients]]
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
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
    auth_time       BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,                  -- its refresh tokens live no longer
    revoked_at      BIGINT,
    revoked_reason  TEXT
);
CREATE INDEX oidc_grants_by_session ON oidc_grants (session_id);
CREATE INDEX oidc_grants_by_user_client ON oidc_grants (user_id, client_id);

-- Authorization codes: single use; `grant_id` is set when one is redeemed, so a second use
-- finds the grant to revoke.
CREATE TABLE oidc_codes (
    code_hash              BYTEA PRIMARY KEY,
    client_id              TEXT NOT NULL,
    user_id                TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id             TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    redirect_uri           TEXT NOT NULL,
    scope                  TEXT NOT NULL,
    nonce                  TEXT,
    code_challenge         TEXT,
    code_challenge_method  TEXT,
    amr                    TEXT NOT NULL,
    auth_time              BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    expires_at             BIGINT NOT NULL,
    grant_id               TEXT
);
CREATE INDEX oidc_codes_by_expiry ON oidc_codes (expires_at);

-- Refresh tokens: each rotation marks the old one; presenting a rotated one revokes the grant.
CREATE TABLE oidc_refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    rotated_at  BIGINT
);
CREATE INDEX oidc_refresh_tokens_by_grant ON oidc_refresh_tokens (grant_id);

-- Access tokens (JWTs) by their jti: userinfo and introspection ask whether one is revoked.
CREATE TABLE oidc_access_tokens (
    jti         TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX oidc_access_tokens_by_grant ON oidc_access_tokens (grant_id);

-- What a user allowed a client: the scopes, space-separated and sorted.
CREATE TABLE oidc_consents (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE user_groups (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_name  TEXT NOT NULL,
    PRIMARY KEY (user_id, group_name)
);

-- ID tokens are signed with RS256 by default: signing_keys takes RSA keys.
ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_algorithm_check;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_algorithm_check CHECK (algorithm IN ('ES256', 'EdDSA', 'RS256'));

-- Recorded here too, so `psql -v ON_ERROR_STOP=1 -d DATABASE_URL -f migrations/postgres/0006_add_oidc_provider.sql` leaves a database the server accepts.
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (6, 'add_oidc_provider', 'by-hand', EXTRACT(EPOCH FROM now())::bigint)
ON CONFLICT (version) DO NOTHING;
