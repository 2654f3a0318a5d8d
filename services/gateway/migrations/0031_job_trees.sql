-- Subagent trees are bounded in total descendants: one counter per root job, taken in the
-- transaction that submits each subagent (so concurrent submits in one tree cannot overshoot).
CREATE TABLE job_trees (
    root_job_id uuid PRIMARY KEY,
    descendants integer NOT NULL CHECK (descendants >= 0)
);
