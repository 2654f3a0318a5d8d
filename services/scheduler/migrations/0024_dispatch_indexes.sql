-- The dispatcher's statement reads the two queues it serves through indexes of their own, so
-- its cost follows the workspaces with queued work and the jobs it takes, not the backlog:
-- top-level jobs by workspace (priority, then submit order), and subagents in submit order.
CREATE INDEX jobs_queued_roots ON jobs (workspace_id, priority DESC, id)
    WHERE status = 'queued' AND (spec->>'parent_job_id') IS NULL;
CREATE INDEX jobs_queued_children ON jobs (id)
    WHERE status = 'queued' AND (spec->>'parent_job_id') IS NOT NULL;
DROP INDEX jobs_queued_turns;
