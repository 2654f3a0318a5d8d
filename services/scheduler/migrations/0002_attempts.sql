-- Attempts are claimed and completed through the scheduler; it remembers who runs what.
ALTER TABLE jobs ADD COLUMN runner text;
ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;
CREATE INDEX jobs_running ON jobs (started_at) WHERE status = 'running';
