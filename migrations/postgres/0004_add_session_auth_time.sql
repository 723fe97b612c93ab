-- When the user signed in to start the session (a refresh keeps it): adding a passkey needs a
-- recent one (auth.reauth_window), and access tokens carry it (auth_time, RFC 9068).
-- A session opened before this migration started with a sign-in at its creation.
ALTER TABLE sessions ADD COLUMN auth_time BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET auth_time = created_at;

-- Recorded here too, so `psql -v ON_ERROR_STOP=1 -d DATABASE_URL -f migrations/postgres/0004_add_session_auth_time.sql` leaves a database the server accepts.
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (4, 'add_session_auth_time', 'by-hand', EXTRACT(EPOCH FROM now())::bigint)
ON CONFLICT (version) DO NOTHING;
