-- The first schema. Times are UNIX seconds; ids are sortable random strings (UUIDv7).
-- Secrets are never stored in the clear: link tokens, refresh tokens and challenges as SHA-256,
-- one-time codes as HMAC-SHA-256 keyed with the server secret.
-- PostgreSQL translation of migrations/sqlite/0001_init.sql: BLOB is BYTEA, times and counters
-- are BIGINT, except the queues' next_attempt_at and lease_expires_at, which hold fractional
-- seconds (DOUBLE PRECISION); flags stay INTEGER 0/1.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at BIGINT NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,          -- normalised: trimmed, lower case
    webauthn_handle BYTEA NOT NULL UNIQUE,         -- random user handle given to authenticators
    created_at      BIGINT NOT NULL,
    last_sign_in_at BIGINT
);

CREATE TABLE sign_in_tickets (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    token_hash  BYTEA NOT NULL UNIQUE,             -- SHA-256 of the link token
    code_hash   BYTEA NOT NULL,                    -- HMAC of ticket id and code
    attempts    BIGINT NOT NULL DEFAULT 0,         -- wrong codes so far
    redirect_to TEXT,
    ip          TEXT,
    user_agent  TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    spent_at    BIGINT                             -- used, or burned by too many wrong codes
);
CREATE INDEX sign_in_tickets_by_email ON sign_in_tickets (email, created_at);
CREATE INDEX sign_in_tickets_by_expiry ON sign_in_tickets (expires_at);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_token_hash  BYTEA NOT NULL UNIQUE,
    amr                 TEXT NOT NULL,             -- JSON list: ["email"], ["otp"], ["hwk", "user"]
    ip                  TEXT,
    user_agent          TEXT,
    created_at          BIGINT NOT NULL,
    last_used_at        BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    revoked_at          BIGINT,
    revoked_reason      TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Every refresh token a session has exchanged: presenting one again means it leaked.
CREATE TABLE rotated_refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    rotated_at BIGINT NOT NULL
);
CREATE INDEX rotated_refresh_tokens_by_session ON rotated_refresh_tokens (session_id);

CREATE TABLE passkeys (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id   BYTEA NOT NULL UNIQUE,
    public_key      BYTEA NOT NULL,                -- COSE key
    sign_count      BIGINT NOT NULL DEFAULT 0,
    transports      TEXT NOT NULL DEFAULT '[]',    -- JSON list
    aaguid          TEXT NOT NULL DEFAULT '',
    backup_eligible INTEGER NOT NULL DEFAULT 0,
    backed_up       INTEGER NOT NULL DEFAULT 0,
    name            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT
);
CREATE INDEX passkeys_by_user ON passkeys (user_id);

CREATE TABLE webauthn_challenges (
    challenge_hash BYTEA PRIMARY KEY,              -- SHA-256 of the challenge
    purpose        TEXT NOT NULL CHECK (purpose IN ('registration', 'authentication')),
    user_id        TEXT REFERENCES users (id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX webauthn_challenges_by_expiry ON webauthn_challenges (expires_at);

CREATE TABLE email_queue (
    id               TEXT PRIMARY KEY,
    to_address       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT,                         -- cleared once sent or dead
    body_html        TEXT,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    last_attempt_at  BIGINT,
    next_attempt_at  DOUBLE PRECISION NOT NULL,    -- fractional seconds
    lease_expires_at DOUBLE PRECISION,             -- fractional seconds
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX email_queue_due ON email_queue (status, next_attempt_at);

CREATE TABLE webhook_queue (
    id               TEXT PRIMARY KEY,             -- the webhook-id, the same on every retry
    url              TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,                -- JSON body
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    last_attempt_at  BIGINT,
    next_attempt_at  DOUBLE PRECISION NOT NULL,    -- fractional seconds
    lease_expires_at DOUBLE PRECISION,             -- fractional seconds
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX webhook_queue_due ON webhook_queue (status, next_attempt_at);

CREATE TABLE audit_logs (
    id         TEXT PRIMARY KEY,                   -- sortable: pagination follows it
    created_at BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    user_id    TEXT,                               -- no foreign key: rows outlive the user
    email      TEXT,
    ip         TEXT,
    user_agent TEXT,
    success    INTEGER NOT NULL CHECK (success IN (0, 1)),
    details    TEXT NOT NULL DEFAULT '{}'          -- JSON object
);
CREATE INDEX audit_logs_by_event ON audit_logs (event_type, id);
CREATE INDEX audit_logs_by_user ON audit_logs (user_id, id);
CREATE INDEX audit_logs_by_time ON audit_logs (created_at);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL CHECK (algorithm IN ('ES256', 'EdDSA')),
    private_key TEXT NOT NULL,                     -- PEM
    public_jwk  TEXT NOT NULL,                     -- JSON, served at /.well-known/jwks.json
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT                             -- stopped signing; published until its tokens expire
);

-- Recorded here too, so `psql -v ON_ERROR_STOP=1 -d DATABASE_URL -f migrations/postgres/0001_init.sql` leaves a database the server accepts.
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (1, 'init', 'by-hand', EXTRACT(EPOCH FROM now())::bigint)
ON CONFLICT (version) DO NOTHING;
