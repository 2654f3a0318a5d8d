-- Skillpacks: deployable projects of a workspace, each with its own versions and active pointer.
CREATE TABLE skillpacks (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL,
    slug                 text NOT NULL,
    visibility           text NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'public')),
    active_deployment_id uuid,
    activation           integer NOT NULL DEFAULT 0,
    next_version         integer NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, slug)
);

CREATE TABLE deployments (
    id               uuid PRIMARY KEY,
    skillpack_id     uuid NOT NULL REFERENCES skillpacks(id),
    workspace_id     uuid NOT NULL,
    version          integer NOT NULL,
    status           text NOT NULL CHECK (status IN ('building', 'ready', 'failed')),
    notes            text NOT NULL DEFAULT '',
    bundle_sha256    text NOT NULL,
    bundle_bytes     bigint NOT NULL,
    has_requirements boolean NOT NULL DEFAULT false,
    skills           jsonb NOT NULL,
    build_log        text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    UNIQUE (skillpack_id, version)
);
CREATE INDEX deployments_by_skillpack ON deployments (skillpack_id, version DESC);
