-- The gateway's own state: tenants and their keys.
CREATE TABLE workspaces (
    id         uuid PRIMARY KEY,
    slug       text NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces(id),
    kind             text NOT NULL CHECK (kind IN ('secret', 'publishable')),
    prefix           text NOT NULL UNIQUE,
    secret_sha256    bytea NOT NULL,
    name             text NOT NULL DEFAULT '',
    skillpack        text NOT NULL DEFAULT 'default',
    allowed_skills   text[],
    daily_cap_micros bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz,
    revoked_at       timestamptz
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id, id DESC);

-- Read model: the skill catalogue, from deployment.* events.
CREATE TABLE skillpacks (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL,
    slug                 text NOT NULL,
    visibility           text NOT NULL DEFAULT 'private',
    active_deployment_id uuid,
    activation           integer NOT NULL DEFAULT 0,
    UNIQUE (workspace_id, slug)
);

CREATE TABLE deployments (
    id           uuid PRIMARY KEY,
    skillpack_id uuid NOT NULL,
    workspace_id uuid NOT NULL,
    version      integer NOT NULL,
    status       text NOT NULL,
    notes        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    deleted      boolean NOT NULL DEFAULT false,
    UNIQUE (skillpack_id, version)
);

CREATE TABLE skills (
    deployment_id   uuid NOT NULL,
    name            text NOT NULL,
    kind            text NOT NULL,
    entrypoint      text NOT NULL,
    description     text NOT NULL DEFAULT '',
    model           text,
    input_schema    jsonb,
    output_schema   jsonb,
    timeout_seconds integer,
    PRIMARY KEY (deployment_id, name)
);

-- Read model: jobs, from job.* events. Every column but id is filled by whichever event
-- carries it, in any order, so a replay in stream order rebuilds the same rows.
CREATE TABLE jobs (
    id                 uuid PRIMARY KEY,
    workspace_id       uuid,
    skill_name         text,
    skillpack_id       uuid,
    skillpack_slug     text,
    owner_workspace_id uuid,
    deployment_id      uuid,
    version            integer,
    kind               text,
    key_id             uuid,
    parent_job_id      uuid,
    status             text NOT NULL DEFAULT 'queued',
    attempt            integer NOT NULL DEFAULT 0,
    result             jsonb,
    result_ref         text,
    error              text,
    error_detail       jsonb,
    created_at         timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz
);
CREATE INDEX jobs_by_workspace ON jobs (workspace_id, id DESC);
CREATE INDEX jobs_by_workspace_status ON jobs (workspace_id, status, id DESC);

-- Read model: public job events; id = the JOBS stream sequence.
CREATE TABLE job_events (
    seq        bigint PRIMARY KEY,
    job_id     uuid NOT NULL,
    type       text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, seq);
