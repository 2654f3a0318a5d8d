-- Skillpack settings arrive with a revision; only a newer one is applied.
ALTER TABLE skillpacks ADD COLUMN revision integer NOT NULL DEFAULT 0;
