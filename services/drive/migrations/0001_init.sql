-- Object metadata and origin: which job, skill and tool wrote each file of a workspace's drive.
CREATE TABLE objects (
    workspace_id  uuid NOT NULL,
    path          text NOT NULL,
    bytes         bigint NOT NULL,
    content_type  text NOT NULL,
    updated_at    timestamptz NOT NULL,
    origin_job_id uuid,
    origin_skill  text,
    origin_tool   text,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, path)
);
