-- Idempotent submission: the same key and body within 24 h returns the original job.
CREATE TABLE idempotency_keys (
    workspace_id uuid NOT NULL,
    key          text NOT NULL,
    body_sha256  bytea NOT NULL,
    job_id       uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, key)
);

-- End-user feedback on a job's result: one row per (job, end user), overwritten in place.
CREATE TABLE job_feedback (
    job_id       uuid NOT NULL,
    end_user_id  text NOT NULL,
    workspace_id uuid NOT NULL,
    rating       smallint NOT NULL CHECK (rating IN (-1, 0, 1)),
    comment      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, end_user_id)
);
CREATE INDEX job_feedback_newest ON job_feedback (job_id, updated_at DESC);
