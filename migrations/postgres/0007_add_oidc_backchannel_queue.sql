-- Back-channel logout deliveries (OIDC.md, "Sessions and logout"): one row per client with a
-- backchannel_logout_uri that received tokens in a session that ended, queued in the transaction
-- that ended it; the worker signs the logout token at each attempt (a fresh iat), its jti the id.
CREATE TABLE oidc_backchannel_queue (
    id               TEXT PRIMARY KEY,             -- the logout token's jti, the same on every retry
    client_id        TEXT NOT NULL,
    url              TEXT NOT NULL,                -- the client's backchannel_logout_uri when queued
    user_id          TEXT NOT NULL,                -- sub (no foreign key: a deleted user is logged out too)
    session_id       TEXT NOT NULL,                -- sid
    algorithm        TEXT NOT NULL,                -- the client's id_token_signed_response_alg
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
CREATE INDEX oidc_backchannel_queue_due ON oidc_backchannel_queue (status, next_attempt_at);

-- Recorded here too, so `psql -v ON_ERROR_STOP=1 -d DATABASE_URL -f migrations/postgres/0007_add_oidc_backchannel_queue.sql` leaves a database the server accepts.
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (7, 'add_oidc_backchannel_queue', 'by-hand', EXTRACT(EPOCH FROM now())::bigint)
ON CONFLICT (version) DO NOTHING;
