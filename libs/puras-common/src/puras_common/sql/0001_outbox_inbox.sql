-- Tables every service schema has. Applied first, before the service's own migrations.

-- Refuses UPDATE, DELETE and TRUNCATE on the tables that are logs.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- The service's event log, written in the same transaction as the state it describes.
-- tx_id orders rows the relay may publish: rows of transactions older than every running one
-- are final, so a cursor over (tx_id, seq) never skips a late commit.
CREATE TABLE outbox (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id      xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id   uuid NOT NULL UNIQUE,
    type       text NOT NULL,
    subject    text NOT NULL,
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_relay_order ON outbox (tx_id, seq);
CREATE TRIGGER outbox_append_only BEFORE UPDATE OR DELETE ON outbox
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER outbox_no_truncate BEFORE TRUNCATE ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- How far the relay has published.
CREATE TABLE outbox_cursor (
    relay      text PRIMARY KEY,
    tx_id      xid8 NOT NULL,
    seq        bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events this service has applied, per consumer, recorded with the effect itself.
CREATE TABLE inbox (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    stream_seq   bigint NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
