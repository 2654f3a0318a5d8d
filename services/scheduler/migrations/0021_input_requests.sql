-- Human in the loop: a job that asked for input is 'waiting' (it holds no slot: only
-- 'dispatched' and 'running' count against a workspace's concurrency). input_request is the
-- question, input_expires_at when the job fails unanswered (a sweep fails it, whichever
-- replica runs it, after any restart); answers are every answer the job got, in order, which
-- its next attempts run on from.
ALTER TABLE jobs ADD COLUMN input_request jsonb;
ALTER TABLE jobs ADD COLUMN input_expires_at timestamptz;
ALTER TABLE jobs ADD COLUMN answers jsonb NOT NULL DEFAULT '[]';
-- A job that waited is dispatched again: dispatched_attempt is the attempt its latest WORK
-- message carries, so a redelivered message of an earlier run is told apart and refused.
ALTER TABLE jobs ADD COLUMN dispatched_attempt integer;
CREATE INDEX jobs_waiting ON jobs (input_expires_at) WHERE status = 'waiting';
