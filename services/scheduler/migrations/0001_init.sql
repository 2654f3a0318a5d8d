-- The job queue's state machine: queued -> dispatched -> running -> succeeded | failed | cancelled.
CREATE TABLE jobs (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    kind          text NOT NULL,
    status        text NOT NULL DEFAULT 'queued',
    attempt       integer NOT NULL DEFAULT 0,
    spec          jsonb NOT NULL,
    submitted_at  timestamptz NOT NULL,
    dispatched_at timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX jobs_queued ON jobs (id) WHERE status = 'queued';
CREATE INDEX jobs_active ON jobs (workspace_id) WHERE status IN ('dispatched', 'running');

-- Each workspace's balance as billing last reported it; the highest version wins.
CREATE TABLE balances (
    workspace_id   uuid PRIMARY KEY,
    balance_micros bigint NOT NULL,
    version        bigint NOT NULL
);
