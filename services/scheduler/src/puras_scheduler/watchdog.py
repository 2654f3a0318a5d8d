"""No job stays running forever: a job still running well past its timeout has lost its worker
(a runner kills its own jobs at the timeout), so it fails with a message that says so."""

from __future__ import annotations

import asyncio

from puras_common.errors import while_away
from puras_common.events.jobs import FailedPayload
from puras_common.logging import get_logger
from puras_common.outbox import Outbox

from puras_scheduler.tree import fail

log = get_logger("puras_scheduler.watchdog")

_OVERDUE = """
SELECT id, workspace_id, attempt, (spec->>'timeout_seconds')::int AS timeout_seconds
FROM jobs
WHERE status = 'running'
  AND started_at < now() - make_interval(secs => (spec->>'timeout_seconds')::int + $1)
ORDER BY started_at
LIMIT 100
FOR UPDATE SKIP LOCKED
"""


class Watchdog:
    def __init__(self, outbox: Outbox, *, grace_seconds: int) -> None:
        self.outbox = outbox
        self.grace_seconds = grace_seconds

    async def run(self, *, interval: float = 10.0) -> None:
        while True:
            await while_away(self.sweep, what="overdue jobs")
            await asyncio.sleep(interval)

    async def sweep(self) -> int:
        """Fail every overdue running job; returns how many."""
        async with self.outbox.transaction() as uow:
            rows = await uow.conn.fetch(_OVERDUE, self.grace_seconds)
            for row in rows:
                await uow.conn.execute(
                    "UPDATE jobs SET status = 'failed', finished_at = now() WHERE id = $1",
                    row["id"],
                )
                await fail(
                    uow,
                    row,
                    FailedPayload(
                        attempt=row["attempt"],
                        reason="worker_lost",
                        error=(
                            f"worker lost: no result {row['timeout_seconds']} s (the job's timeout) "
                            f"+ {self.grace_seconds} s after it started"
                        ),
                    ),
                )
        if rows:
            log.warning("failed jobs whose worker was lost", count=len(rows))
        return len(rows)
