-- When a key starts signing: `keys rotate` publishes a new key at once but signs with it only
-- once cached JWKS copies have it (NULL, for keys made before: from created_at).
ALTER TABLE signing_keys ADD COLUMN signs_from BIGINT;

-- Recorded here too, so `psql -v ON_ERROR_STOP=1 -d DATABASE_URL -f migrations/postgres/0005_add_signing_key_signs_from.sql` leaves a database the server accepts.
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (5, 'add_signing_key_signs_from', 'by-hand', EXTRACT(EPOCH FROM now())::bigint)
ON CONFLICT (version) DO NOTHING;
