-- Endpoints: where a workspace's job events go, and the secret they are signed with. A
-- workspace also has at most one 'job_url' endpoint: the signer and log of the webhook_url that
-- single jobs name (its url is NULL; each delivery carries its own).
CREATE TABLE endpoints (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('endpoint', 'job_url')),
    url                  text,
    description          text NOT NULL DEFAULT '',
    events               text[] NOT NULL,
    secret               text NOT NULL,
    previous_secret      text,
    previous_until       timestamptz,
    enabled              boolean NOT NULL DEFAULT true,
    disabled_reason      text,
    disabled_at          timestamptz,
    failing_since        timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz
);
CREATE INDEX endpoints_by_workspace ON endpoints (workspace_id, id DESC) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX endpoints_one_job_url ON endpoints (workspace_id)
    WHERE kind = 'job_url' AND deleted_at IS NULL;

-- What a delivery says about a job, from its job.submitted (kept until a day after it ends).
CREATE TABLE jobs (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    summary       jsonb NOT NULL,
    webhook_url   text,
    finished_at   timestamptz
);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- One delivery per (endpoint, event): created in the transaction that records the event in the
-- inbox, so an event redelivered by the bus makes no second one.
CREATE TABLE deliveries (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL,
    endpoint_id     uuid NOT NULL REFERENCES endpoints(id),
    url             text NOT NULL,
    job_id          uuid,
    event_type      text NOT NULL,
    source_event_id uuid NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    tries           integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     uuid,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (endpoint_id, source_event_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, id DESC);

-- Every attempt: what the receiver answered and how long it took.
CREATE TABLE attempts (
    delivery_id      uuid NOT NULL REFERENCES deliveries(id),
    n                integer NOT NULL,
    started_at       timestamptz NOT NULL,
    status_code      integer,
    latency_ms       integer NOT NULL,
    response_excerpt text NOT NULL DEFAULT '',
    error            text,
    PRIMARY KEY (delivery_id, n)
);
