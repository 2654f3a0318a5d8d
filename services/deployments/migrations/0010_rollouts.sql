-- Ramped rollouts: while a deployment ramps up, it (the canary) takes canary_percent % of the
-- skillpack's unpinned jobs and the active deployment the rest. previous_deployment_id is what
-- was active before the last full activation: a rollback without a ramp returns to it.
ALTER TABLE skillpacks
    ADD COLUMN canary_deployment_id   uuid,
    ADD COLUMN canary_percent         integer CHECK (canary_percent BETWEEN 1 AND 99),
    ADD COLUMN ramp_started_at        timestamptz,
    ADD COLUMN previous_deployment_id uuid;
