-- A job's own compute (puras/compute) is a usage row with its two measures.
ALTER TABLE usage_rows ADD COLUMN cpu_ms bigint, ADD COLUMN wall_ms bigint;
