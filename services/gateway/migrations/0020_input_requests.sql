-- Human in the loop: the question a 'waiting' job asked (from job.input_requested), cleared
-- when it is answered. The answer route moves the row from 'waiting' to 'queued' in the
-- transaction that emits job.input_provided, so one question takes one answer.
ALTER TABLE jobs ADD COLUMN input_request jsonb;
