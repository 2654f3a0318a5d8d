-- Subagents: a job's children, found by the parent id in their spec (to cancel them with it).
CREATE INDEX jobs_by_parent ON jobs ((spec->>'parent_job_id')) WHERE spec->>'parent_job_id' IS NOT NULL;
