-- The host uid (and gid) of each workspace: its jobs run as it and its drive folder belongs to
-- it. Assigned once from the configured range (PURAS_SANDBOX_UID_BASE, _COUNT), never reused.
CREATE TABLE workspace_uids (
    workspace_id uuid PRIMARY KEY,
    uid          integer NOT NULL UNIQUE,
    assigned_at  timestamptz NOT NULL DEFAULT now()
);
