-- Which configured webhook a delivery is for (two hooks may share a URL but not a secret).
ALTER TABLE webhook_queue ADD COLUMN hook_key TEXT NOT NULL DEFAULT '';
