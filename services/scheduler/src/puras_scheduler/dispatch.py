"""Handing queued jobs to the runners' work queue.

A job is dispatched when its workspace's balance is above zero and the workspace has fewer than
``max_concurrency_per_workspace`` jobs dispatched or running. Claims use ``FOR UPDATE SKIP
LOCKED``, so scheduler replicas never dispatch the same job twice; the WORK message and the
``job.dispatched`` event commit with the claim.

A subagent (a job with a parent) neither counts against the limit nor waits for it: its parent
holds a slot while it waits for the child, so gating the child on the same slots could deadlock
a tree. Subagent trees are bounded by the gateway instead (depth and children per job), and
their work goes to the runners' own pool of slots (``run.*.child``). Children are claimed first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from puras_common.events import JobDispatched, JobKind, RunAgent, RunFunction, RunPayload
from puras_common.events.jobs import DispatchedPayload
from puras_common.logging import get_logger
from puras_common.outbox import Outbox, UnitOfWork

log = get_logger("puras_scheduler.dispatch")

_CLAIM = """
SELECT j.id, j.workspace_id, j.kind, j.attempt, j.spec
FROM jobs j JOIN balances b ON b.workspace_id = j.workspace_id
WHERE j.status = 'queued' AND b.balance_micros > 0
ORDER BY (j.spec->>'parent_job_id') IS NULL, j.id
LIMIT $1
FOR UPDATE OF j SKIP LOCKED
"""


class Dispatcher:
    def __init__(self, outbox: Outbox, *, max_per_workspace: int, batch: int) -> None:
        self.outbox = outbox
        self.max_per_workspace = max_per_workspace
        self.batch = batch
        self.wake = asyncio.Event()
        self.dispatched = 0

    async def run(self, *, poll_seconds: float = 1.0) -> None:
        while True:
            self.wake.clear()
            while await self.dispatch_once() == self.batch:
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), poll_seconds)

    async def dispatch_once(self) -> int:
        """Dispatch what may run now; returns how many jobs were looked at."""
        async with self.outbox.transaction() as uow:
            return await self.dispatch_in(uow)

    async def dispatch_in(self, uow: UnitOfWork) -> int:
        """Dispatch within ``uow``'s transaction (the one that queued the jobs, saving a commit
        on every job's path); returns how many jobs were looked at."""
        rows = await uow.conn.fetch(_CLAIM, self.batch)
        if not rows:
            return 0
        workspaces = list({r["workspace_id"] for r in rows})
        active = Counter(
            {
                r["workspace_id"]: r["n"]
                for r in await uow.conn.fetch(
                    """SELECT workspace_id, count(*) AS n FROM jobs
                       WHERE status IN ('dispatched', 'running') AND workspace_id = ANY($1)
                         AND spec->>'parent_job_id' IS NULL
                       GROUP BY workspace_id""",
                    workspaces,
                )
            }
        )
        chosen = []
        for row in rows:
            if row["spec"].get("parent_job_id") is not None:
                chosen.append(row)  # a subagent: its tree's root holds the slot
            elif active[row["workspace_id"]] < self.max_per_workspace:
                active[row["workspace_id"]] += 1
                chosen.append(row)
        if not chosen:
            return 0
        await uow.conn.execute(
            """UPDATE jobs SET status = 'dispatched', attempt = attempt + 1, dispatched_at = now()
               WHERE id = ANY($1)""",
            [r["id"] for r in chosen],
        )
        for row in chosen:
            attempt = row["attempt"] + 1
            payload = RunPayload(**row["spec"], attempt=attempt)
            command = RunAgent if payload.kind is JobKind.AGENT else RunFunction
            uow.emit(
                command.new(payload, producer="scheduler", workspace_id=row["workspace_id"], job_id=row["id"]),
                JobDispatched.new(
                    DispatchedPayload(attempt=attempt, kind=payload.kind),
                    producer="scheduler",
                    workspace_id=row["workspace_id"],
                    job_id=row["id"],
                ),
            )
        self.dispatched += len(chosen)
        return len(rows)
