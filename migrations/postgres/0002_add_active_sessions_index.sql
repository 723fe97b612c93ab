-- Counting active sessions (the active_sessions metric, admin stats) reads only this index.
CREATE INDEX sessions_active ON sessions (expires_at) WHERE revoked_at IS NULL;

-- Recorded here too, so `psql -v ON_ERROR_STOP=1 -d DATABASE_URL -f migrations/postgres/0002_add_active_sessions_index.sql` leaves a database the server accepts.
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (2, 'add_active_sessions_index', 'by-hand', EXTRACT(EPOCH FROM now())::bigint)
ON CONFLICT (version) DO NOTHING;
