-- Fair share: each workspace's own queue is ordered by priority (higher first), then by id
-- (submit order); the dispatcher takes turns across workspaces over this index.
ALTER TABLE jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0;
CREATE INDEX jobs_queued_turns ON jobs (workspace_id, priority DESC, id) WHERE status = 'queued';
