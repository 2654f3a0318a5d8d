-- Skillpack settings carry a revision, so a reader keeps only the newest.
ALTER TABLE skillpacks ADD COLUMN revision integer NOT NULL DEFAULT 0;

-- A deployment with a requirements.txt is `building` until its build (shared by every
-- deployment with the same file) is ready or failed.
ALTER TABLE deployments
    ADD COLUMN requirements_sha256 text,
    ADD COLUMN activate_when_ready boolean NOT NULL DEFAULT false,
    ADD COLUMN error text,
    ADD COLUMN built_at timestamptz;
CREATE INDEX deployments_waiting_for_build ON deployments (requirements_sha256) WHERE status = 'building';

-- One build per distinct requirements.txt: pip builds the wheels (in the sandbox), kept as a
-- wheelhouse next to the bundles for every runner to install from.
CREATE TABLE builds (
    requirements_sha256 text PRIMARY KEY,
    requirements        text NOT NULL,
    status              text NOT NULL CHECK (status IN ('building', 'ready', 'failed')),
    log                 text NOT NULL DEFAULT '',
    error               text,
    attempts            integer NOT NULL DEFAULT 0,
    lease_owner         text,
    lease_expires_at    timestamptz,
    wheels              integer,
    wheelhouse_bytes    bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz
);
CREATE INDEX builds_pending ON builds (created_at) WHERE status = 'building';

-- Secrets: AES-256-GCM under a per-workspace data key, itself wrapped by the master key
-- named by key_id (rotation re-wraps these rows, never the secrets).
CREATE TABLE data_keys (
    workspace_id uuid PRIMARY KEY,
    key_id       text NOT NULL,
    wrapped      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rewrapped_at timestamptz
);

CREATE TABLE secrets (
    skillpack_id uuid NOT NULL REFERENCES skillpacks(id),
    name         text NOT NULL,
    workspace_id uuid NOT NULL,
    ciphertext   bytea NOT NULL,
    value_bytes  integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (skillpack_id, name)
);
