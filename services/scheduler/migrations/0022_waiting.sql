-- Why queued jobs wait: the last reason announced (NULL: 'queue', as job.submitted implies),
-- and the key and its cap, to fail at once the jobs of a key whose daily cap is spent.
ALTER TABLE jobs ADD COLUMN waiting_reason text;
ALTER TABLE jobs ADD COLUMN key_id uuid;
ALTER TABLE jobs ADD COLUMN daily_cap_micros bigint;
CREATE INDEX jobs_queued_by_key ON jobs (key_id) WHERE status = 'queued' AND key_id IS NOT NULL;

-- Spend per key per UTC day of the call, folded from ledger.posted.
CREATE TABLE key_spend (
    key_id       uuid NOT NULL,
    day          date NOT NULL,
    spent_micros bigint NOT NULL,
    PRIMARY KEY (key_id, day)
);
