-- When the user signed in to start the session (a refresh keeps it): adding a passkey needs a
-- recent one (auth.reauth_window), and access tokens carry it (auth_time, RFC 9068).
-- A session opened before this migration started with a sign-in at its creation.
ALTER TABLE sessions ADD COLUMN auth_time INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET auth_time = created_at;

-- Recorded here too, so `sqlite3 auth.db < migrations/0004_add_session_auth_time.sql` leaves a database the server accepts.
INSERT OR IGNORE INTO schema_migrations (version, name, checksum, applied_at)
VALUES (4, 'add_session_auth_time', 'by-hand', CAST(strftime('%s', 'now') AS INTEGER));
