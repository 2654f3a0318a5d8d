"""Hosting a job, shared by both runners: the deployment cache and its fork servers
(:mod:`puras_jobhost.prepare`) and the job's ``./drive`` (:mod:`puras_jobhost.workdrive`).
A runner keeps only what differs: calling ``run()``, or running the agent loop."""
