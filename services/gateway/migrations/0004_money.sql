-- Read model of billing's ledger, from ledger.posted: balances, usage rows, cost per job and
-- spend per key per UTC day. Every row is keyed by what it counts (the usage id), so a replay
-- of the LEDGER stream rebuilds the same numbers.
CREATE TABLE balances (
    workspace_id   uuid PRIMARY KEY,
    balance_micros bigint NOT NULL,
    version        bigint NOT NULL
);

CREATE TABLE usage_rows (
    usage_id      uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    job_id        uuid,
    key_id        uuid,
    attempt       integer,
    kind          text NOT NULL,
    provider      text NOT NULL,
    model         text NOT NULL,
    variant       text,
    input_tokens  bigint NOT NULL,
    output_tokens bigint NOT NULL,
    units         numeric NOT NULL,
    unit          text NOT NULL,
    billed_micros bigint NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX usage_rows_by_job ON usage_rows (job_id, created_at DESC, usage_id DESC);

CREATE TABLE job_costs (
    job_id       uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    cost_micros  bigint NOT NULL,
    usage_rows   bigint NOT NULL
);

CREATE TABLE key_spend (
    key_id       uuid NOT NULL,
    day          date NOT NULL,
    spent_micros bigint NOT NULL,
    PRIMARY KEY (key_id, day)
);

-- Grants this gateway emitted: until billing posts one, it still counts towards the balance a
-- submit is admitted on, so a job sent right after a grant is not refused with 402.
CREATE TABLE credit_grants (
    grant_id      uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    amount_micros bigint NOT NULL,
    posted        boolean NOT NULL DEFAULT false
);
CREATE INDEX credit_grants_pending ON credit_grants (workspace_id) WHERE NOT posted;

-- The job object's cost_micros (own usage) and total_cost_micros (with its subagent tree).
CREATE INDEX jobs_by_parent ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;

CREATE FUNCTION job_cost(job uuid) RETURNS bigint LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce((SELECT cost_micros FROM job_costs WHERE job_id = job), 0)
$$;

CREATE FUNCTION job_total_cost(job uuid) RETURNS bigint LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH RECURSIVE tree(id) AS (
        SELECT job
        UNION
        SELECT j.id FROM jobs j JOIN tree t ON j.parent_job_id = t.id
    )
    SELECT coalesce(sum(c.cost_micros), 0)::bigint FROM job_costs c JOIN tree t ON c.job_id = t.id
$$;
