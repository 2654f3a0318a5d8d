-- Budget holds: the maximum cost of a model or media call, held against the workspace's balance
-- and its key's daily cap before the call is made. Open while ended_at is NULL and expires_at is
-- ahead; charging the call's usage (which names the hold) ends it, in the same transaction.
CREATE TABLE holds (
    hold_id          uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL,
    job_id           uuid,
    key_id           uuid,
    day              date NOT NULL,
    amount_micros    bigint NOT NULL CHECK (amount_micros >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    ended_at         timestamptz
);
CREATE INDEX holds_open_by_workspace ON holds (workspace_id) WHERE ended_at IS NULL;
CREATE INDEX holds_open_by_key ON holds (key_id, day) WHERE ended_at IS NULL AND key_id IS NOT NULL;
CREATE INDEX holds_age ON holds (created_at);

-- A key's spend over a UTC day, read when a hold is asked for.
CREATE INDEX usage_by_key ON usage (key_id, created_at) WHERE key_id IS NOT NULL;
