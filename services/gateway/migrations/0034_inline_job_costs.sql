-- A job's costs are computed inside the statement that reads the job (puras_gateway.jobs.COSTS):
-- as functions with a search path of their own they were planned again at every call.
DROP FUNCTION job_total_cost(uuid);
DROP FUNCTION job_cost(uuid);
