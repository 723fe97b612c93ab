-- Which configured webhook a delivery is for (two hooks may share a URL but not a secret).
ALTER TABLE webhook_queue ADD COLUMN hook_key TEXT NOT NULL DEFAULT '';

-- Recorded here too, so `psql -v ON_ERROR_STOP=1 -d DATABASE_URL -f migrations/postgres/0003_add_webhook_hook_key.sql` leaves a database the server accepts.
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (3, 'add_webhook_hook_key', 'by-hand', EXTRACT(EPOCH FROM now())::bigint)
ON CONFLICT (version) DO NOTHING;
