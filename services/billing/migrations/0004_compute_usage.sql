-- A job's own compute (CPU and wall time, slug puras/compute) is usage too.
ALTER TABLE usage DROP CONSTRAINT usage_kind_check;
ALTER TABLE usage ADD CONSTRAINT usage_kind_check CHECK (kind IN ('llm', 'media', 'tool', 'compute'));
