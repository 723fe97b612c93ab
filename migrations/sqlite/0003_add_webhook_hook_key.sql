-- Which configured webhook a delivery is for (two hooks may share a URL but not a secret).
ALTER TABLE webhook_queue ADD COLUMN hook_key TEXT NOT NULL DEFAULT '';

-- Recorded here too, so `sqlite3 auth.db < migrations/0003_add_webhook_hook_key.sql` leaves a database the server accepts.
INSERT OR IGNORE INTO schema_migrations (version, name, checksum, applied_at)
VALUES (3, 'add_webhook_hook_key', 'by-hand', CAST(strftime('%s', 'now') AS INTEGER));
