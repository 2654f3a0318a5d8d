-- The ledger: append-only, integer micros. Grants and refunds are positive, charges negative.
CREATE TABLE ledger (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id        uuid NOT NULL UNIQUE,
    workspace_id    uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('grant', 'charge', 'refund', 'adjustment')),
    amount_micros   bigint NOT NULL,
    source_event_id uuid NOT NULL UNIQUE,
    job_id          uuid,
    note            text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL
);
CREATE INDEX ledger_by_workspace ON ledger (workspace_id, seq);
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Projection of the ledger: balance = sum of the workspace's entries, entries = their count.
CREATE TABLE balances (
    workspace_id   uuid PRIMARY KEY,
    balance_micros bigint NOT NULL,
    entries        bigint NOT NULL
);
