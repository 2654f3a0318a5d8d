-- A deterministic job retried under its skill's retry policy waits queued until retry_at.
ALTER TABLE jobs ADD COLUMN retry_at timestamptz;
