-- Schedules: what each runs and with which inputs (the scheduler keeps only their timing and
-- decides their fire times). source 'deployment': declared in skill.yaml, following the
-- skillpack's active deployment.
CREATE TABLE schedules (
    id             uuid PRIMARY KEY,
    workspace_id   uuid NOT NULL,
    key_id         uuid,
    source         text NOT NULL CHECK (source IN ('api', 'deployment')),
    skillpack_id   uuid,
    deployment_id  uuid,
    name           text NOT NULL DEFAULT '',
    skill          text NOT NULL,
    skillpack      text,
    inputs         jsonb NOT NULL,
    cron           text NOT NULL,
    timezone       text NOT NULL,
    missed         text NOT NULL CHECK (missed IN ('skip', 'catch_up')),
    catch_up_limit integer NOT NULL,
    paused         boolean NOT NULL DEFAULT false,
    revision       integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    fires          bigint NOT NULL DEFAULT 0,
    last_fire_at   timestamptz,
    last_job_id    uuid,
    last_error     text
);
CREATE INDEX schedules_by_workspace ON schedules (workspace_id, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX schedules_by_skillpack ON schedules (skillpack_id) WHERE source = 'deployment';

-- A job started by a schedule links back to it.
ALTER TABLE jobs ADD COLUMN schedule_id uuid, ADD COLUMN scheduled_for timestamptz;
CREATE INDEX jobs_by_schedule ON jobs (schedule_id, id DESC) WHERE schedule_id IS NOT NULL;

-- The schedules each skill of a deployment declares (skill.yaml).
ALTER TABLE skills ADD COLUMN schedules jsonb;
