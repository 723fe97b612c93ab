-- The first schema. Times are UNIX seconds; ids are sortable random strings (UUIDv7).
-- Secrets are never stored in the clear: link tokens, refresh tokens and challenges as SHA-256,
-- one-time codes as HMAC-SHA-256 keyed with the server secret.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at INTEGER NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,          -- normalised: trimmed, lower case
    webauthn_handle BLOB NOT NULL UNIQUE,          -- random user handle given to authenticators
    created_at      INTEGER NOT NULL,
    last_sign_in_at INTEGER
);

CREATE TABLE sign_in_tickets (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,              -- SHA-256 of the link token
    code_hash   BLOB NOT NULL,                     -- HMAC of ticket id and code
    attempts    INTEGER NOT NULL DEFAULT 0,        -- wrong codes so far
    redirect_to TEXT,
    ip          TEXT,
    user_agent  TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    spent_at    INTEGER                            -- used, or burned by too many wrong codes
);
CREATE INDEX sign_in_tickets_by_email ON sign_in_tickets (email, created_at);
CREATE INDEX sign_in_tickets_by_expiry ON sign_in_tickets (expires_at);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_token_hash  BLOB NOT NULL UNIQUE,
    amr                 TEXT NOT NULL,             -- JSON list: ["email"], ["otp"], ["hwk", "user"]
    ip                  TEXT,
    user_agent          TEXT,
    created_at          INTEGER NOT NULL,
    last_used_at        INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    revoked_at          INTEGER,
    revoked_reason      TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Every refresh token a session has exchanged: presenting one again means it leaked.
CREATE TABLE rotated_refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    rotated_at INTEGER NOT NULL
);
CREATE INDEX rotated_refresh_tokens_by_session ON rotated_refresh_tokens (session_id);

CREATE TABLE passkeys (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id   BLOB NOT NULL UNIQUE,
    public_key      BLOB NOT NULL,                 -- COSE key
    sign_count      INTEGER NOT NULL DEFAULT 0,
    transports      TEXT NOT NULL DEFAULT '[]',    -- JSON list
    aaguid          TEXT NOT NULL DEFAULT '',
    backup_eligible INTEGER NOT NULL DEFAULT 0,
    backed_up       INTEGER NOT NULL DEFAULT 0,
    name            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER
);
CREATE INDEX passkeys_by_user ON passkeys (user_id);

CREATE TABLE webauthn_challenges (
    challenge_hash BLOB PRIMARY KEY,               -- SHA-256 of the challenge
    purpose        TEXT NOT NULL CHECK (purpose IN ('registration', 'authentication')),
    user_id        TEXT REFERENCES users (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
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
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    last_attempt_at  INTEGER,
    next_attempt_at  INTEGER NOT NULL,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER
);
CREATE INDEX email_queue_due ON email_queue (status, next_attempt_at);

CREATE TABLE webhook_queue (
    id               TEXT PRIMARY KEY,             -- the webhook-id, the same on every retry
    url              TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,                -- JSON body
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    last_attempt_at  INTEGER,
    next_attempt_at  INTEGER NOT NULL,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX webhook_queue_due ON webhook_queue (status, next_attempt_at);

CREATE TABLE audit_logs (
    id         TEXT PRIMARY KEY,                   -- sortable: pagination follows it
    created_at INTEGER NOT NULL,
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
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER                            -- stopped signing; published until its tokens expire
);

-- Recorded here too, so `sqlite3 auth.db < migrations/0001_init.sql` leaves a database the server accepts.
INSERT OR IGNORE INTO schema_migrations (version, name, checksum, applied_at)
VALUES (1, 'init', 'by-hand', CAST(strftime('%s', 'now') AS INTEGER));
