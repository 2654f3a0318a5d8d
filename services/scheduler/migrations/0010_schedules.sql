-- Schedules' timing, folded from schedule.set / schedule.deleted (the gateway owns what a
-- schedule runs). Fire times after cursor_at are still to come; next_fire_at is the first of
-- them (NULL while paused or deleted, or when the expression never fires again).
CREATE TABLE schedules (
    id             uuid PRIMARY KEY,
    workspace_id   uuid NOT NULL,
    cron           text NOT NULL,
    timezone       text NOT NULL,
    missed         text NOT NULL,
    catch_up_limit integer NOT NULL,
    paused         boolean NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    revision       integer NOT NULL,
    cursor_at      timestamptz NOT NULL,
    next_fire_at   timestamptz
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;

-- One row per fire time: the key that makes each fire time start exactly one job, whichever
-- replica decides it and however often it is decided again.
CREATE TABLE schedule_fires (
    schedule_id uuid NOT NULL,
    fire_at     timestamptz NOT NULL,
    job_id      uuid NOT NULL,
    fired_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, fire_at)
);
CREATE INDEX schedule_fires_age ON schedule_fires (fired_at);
