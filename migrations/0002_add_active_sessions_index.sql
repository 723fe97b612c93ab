-- Counting active sessions (the active_sessions metric, admin stats) reads only this index.
CREATE INDEX sessions_active ON sessions (expires_at) WHERE revoked_at IS NULL;
