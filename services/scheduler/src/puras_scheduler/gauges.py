"""The queue as an operator sees it: jobs by state and kind, and why queued jobs wait.

Read from the scheduler's own table every few seconds into Prometheus gauges; every replica
reports the same numbers (a dashboard takes the max, not the sum).
"""

from __future__ import annotations

import asyncio

import asyncpg
from puras_common.errors import dependency_down
from puras_common.observability import JOBS, QUEUE_DEPTH

ACTIVE_STATES = ("queued", "dispatched", "running")
REASONS = ("ready", "no_credit", "concurrency")

_BY_STATE = """
SELECT status, kind, count(*) AS n FROM jobs
WHERE status IN ('queued', 'dispatched', 'running') GROUP BY status, kind
"""

_WAITING = """
WITH active AS (
    SELECT workspace_id, count(*) AS n FROM jobs
    WHERE status IN ('dispatched', 'running') AND spec->>'parent_job_id' IS NULL
    GROUP BY workspace_id
)
SELECT CASE
         WHEN coalesce(b.balance_micros, 0) <= 0 THEN 'no_credit'
         WHEN j.spec->>'parent_job_id' IS NULL AND coalesce(a.n, 0) >= $1 THEN 'concurrency'
         ELSE 'ready'
       END AS reason,
       count(*) AS n
FROM jobs j
LEFT JOIN balances b ON b.workspace_id = j.workspace_id
LEFT JOIN active a ON a.workspace_id = j.workspace_id
WHERE j.status = 'queued'
GROUP BY 1
"""


async def measure(pool: asyncpg.Pool, *, max_per_workspace: int) -> None:
    """Set the gauges from the table once."""
    by_state = {(r["status"], r["kind"]): r["n"] for r in await pool.fetch(_BY_STATE)}
    for state in ACTIVE_STATES:
        for kind in ("function", "agent"):
            JOBS.labels(state, kind).set(by_state.get((state, kind), 0))
    waiting = {r["reason"]: r["n"] for r in await pool.fetch(_WAITING, max_per_workspace)}
    for reason in REASONS:
        QUEUE_DEPTH.labels(reason).set(waiting.get(reason, 0))


async def keep_measuring(pool: asyncpg.Pool, *, max_per_workspace: int, every: float = 5.0) -> None:
    """Until cancelled; a database away for a moment only skips a reading."""
    while True:
        try:
            await measure(pool, max_per_workspace=max_per_workspace)
        except Exception as exc:
            if not dependency_down(exc):
                raise
        await asyncio.sleep(every)
