-- People: users who sign in to the console, their memberships of workspaces (owner or member),
-- their sessions, invitations, and failed sign-ins (rate limiting).
CREATE TABLE users (
    id                  uuid PRIMARY KEY,
    email               text NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash       text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    workspace_id uuid NOT NULL REFERENCES workspaces(id),
    user_id      uuid NOT NULL REFERENCES users(id),
    role         text NOT NULL CHECK (role IN ('owner', 'member')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);

-- A session is what a signed-in browser's token points at: ending it (sign-out, a new password)
-- refuses the token at once, although the token itself has not expired.
CREATE TABLE sessions (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz,
    ip         text NOT NULL DEFAULT '',
    user_agent text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_by_user ON sessions (user_id) WHERE ended_at IS NULL;

-- Only the sha256 of an invitation's token is kept; the link is shown once, to the owner.
CREATE TABLE invitations (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces(id),
    email        text NOT NULL CHECK (email = lower(email)),
    role         text NOT NULL CHECK (role IN ('owner', 'member')),
    token_sha256 bytea NOT NULL UNIQUE,
    invited_by   uuid REFERENCES users(id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX invitations_open ON invitations (workspace_id, id DESC)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

-- Failed sign-ins, by bucket ('email:<address>' or 'ip:<address>'), counted over a window.
CREATE TABLE login_failures (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket text NOT NULL,
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_by_bucket ON login_failures (bucket, at);

-- The console's filters on the jobs list, and its usage page and charts.
CREATE INDEX jobs_by_workspace_skill ON jobs (workspace_id, skill_name, id DESC);
CREATE INDEX jobs_by_workspace_key ON jobs (workspace_id, key_id, id DESC);
CREATE INDEX usage_rows_by_workspace ON usage_rows (workspace_id, created_at DESC, usage_id DESC);

-- A job's inputs, as submitted (or the payload object holding them), so it can be run again.
ALTER TABLE jobs ADD COLUMN inputs jsonb, ADD COLUMN inputs_ref text;
