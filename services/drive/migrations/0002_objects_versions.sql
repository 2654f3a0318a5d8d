-- Object metadata is a projection of drive.object.written / drive.object.deleted: each row keeps
-- the (time, event id) of the event that set it, so events applied twice or out of order leave
-- the same row, and a deleted path keeps a tombstone until it is written again.
ALTER TABLE objects ADD COLUMN version_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE objects ADD COLUMN version_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE objects ADD COLUMN deleted_at timestamptz;
ALTER TABLE objects ADD COLUMN source text NOT NULL DEFAULT 'upload';
ALTER TABLE objects ALTER COLUMN version_at DROP DEFAULT;
ALTER TABLE objects ALTER COLUMN version_id DROP DEFAULT;
CREATE INDEX objects_origin_job ON objects (origin_job_id) WHERE origin_job_id IS NOT NULL;
