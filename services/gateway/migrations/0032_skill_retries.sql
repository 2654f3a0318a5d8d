-- A deterministic skill's retry policy ({max_attempts, backoff_seconds}), copied into each job.
ALTER TABLE skills ADD COLUMN retries jsonb;
