-- Which delivery of the WORK message the current attempt was claimed with, so a claim the
-- runner sends again (its first request timed out while the scheduler restarted, or NATS did)
-- gets the same answer instead of being taken for a lost worker.
ALTER TABLE jobs ADD COLUMN claim_delivery int;
