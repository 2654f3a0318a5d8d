-- Ramped rollouts: a skillpack's canary takes canary_percent % of its unpinned jobs.
ALTER TABLE skillpacks
    ADD COLUMN canary_deployment_id uuid,
    ADD COLUMN canary_percent       integer;

-- Error rate and cost per version while a deployment ramps.
CREATE INDEX jobs_by_deployment ON jobs (deployment_id, created_at);
