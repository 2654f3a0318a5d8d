-- Charges say which key spent them (spend per key is read from ledger.posted).
ALTER TABLE ledger ADD COLUMN key_id uuid;
CREATE INDEX ledger_by_job ON ledger (job_id) WHERE job_id IS NOT NULL;

-- Every priced usage event, once: usage_id is the usage.recorded event id, so a redelivered or
-- replayed event finds its row and charges nothing. Append-only, like the ledger it feeds; a
-- job's cost is the sum of its rows' billed_micros.
CREATE TABLE usage (
    usage_id      uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    job_id        uuid,
    key_id        uuid,
    attempt       integer,
    kind          text NOT NULL CHECK (kind IN ('llm', 'media', 'tool')),
    provider      text NOT NULL,
    model         text NOT NULL,
    variant       text,
    input_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    units         numeric NOT NULL,
    unit          text NOT NULL,
    inputs        jsonb,
    request_id    text,
    margin_pct    numeric NOT NULL,
    billed_micros bigint NOT NULL CHECK (billed_micros >= 0),
    created_at    timestamptz NOT NULL
);
CREATE INDEX usage_by_job ON usage (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX usage_by_workspace ON usage (workspace_id, created_at);
CREATE TRIGGER usage_append_only BEFORE UPDATE OR DELETE ON usage
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER usage_no_truncate BEFORE TRUNCATE ON usage
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
