"""Handing queued jobs to the runners' work queue.

A job is dispatched when its workspace's balance is above zero and the workspace has fewer than
``max_concurrency_per_workspace`` jobs dispatched or running. Workspaces are served in turns
(see ``_DISPATCH``), so one workspace's backlog never holds up another's jobs, and ``priority``
orders only a workspace's own queue. Claims use ``FOR UPDATE SKIP LOCKED``, so scheduler
replicas never dispatch the same job twice; the WORK message commits with the claim. Nothing
else announces a dispatch: the job's ``job.started`` (or its end) tells readers which attempt
ran, so a job's path has one event and one projection transaction fewer.

A subagent (a job with a parent) neither counts against the limit nor waits for it: its parent
holds a slot while it waits for the child, so gating the child on the same slots could deadlock
a tree. Subagent trees are bounded by the gateway instead (depth and children per job), and
their work goes to the runners' own pool of slots (``run.*.child``). Children are claimed first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from puras_common.bus import Delivery
from puras_common.errors import while_away
from puras_common.events import (
    JobKind,
    ResumeState,
    RunAgent,
    RunFunction,
    RunPayload,
)
from puras_common.logging import get_logger
from puras_common.observability import DISPATCH_SECONDS
from puras_common.outbox import Outbox, UnitOfWork
from puras_common.waits import woken

log = get_logger("puras_scheduler.dispatch")

# One statement chooses and marks a batch. Children first: every queued subagent whose workspace
# has credit and whose key is under its daily cap, in submit order. Then turns, for what is left
# of the batch: every workspace with credit and queued work offers the head of its own queue
# (priority, then submit order), as many jobs as it has free slots; the heads are interleaved by
# their place in line, so the first job of every workspace comes before the second of any, and
# within a turn the longest-waiting head goes first (ids are time-ordered), so with more
# workspaces than a batch holds none is passed over twice. A backlog of any size in one
# workspace costs another workspace's next job at most one place per workspace in line. The
# chosen rows are locked (SKIP LOCKED: scheduler replicas never choose the same job) and marked
# dispatched by the same statement, which returns them as they were, in the order chosen.
_DISPATCH = """
WITH RECURSIVE waiting (workspace_id) AS (
    -- The workspaces with queued top-level jobs, one index probe each (jobs_queued_roots).
    (SELECT q.workspace_id FROM jobs q
     WHERE q.status = 'queued' AND q.spec->>'parent_job_id' IS NULL
     ORDER BY q.workspace_id LIMIT 1)
    UNION ALL
    SELECT (SELECT q.workspace_id FROM jobs q
            WHERE q.status = 'queued' AND q.spec->>'parent_job_id' IS NULL
              AND q.workspace_id > w.workspace_id
            ORDER BY q.workspace_id LIMIT 1)
    FROM waiting w WHERE w.workspace_id IS NOT NULL
), queued_children AS (
    SELECT j.id, j.workspace_id, j.kind, j.attempt, j.spec, j.submitted_at, j.answers
    FROM jobs j
    WHERE j.status = 'queued' AND j.spec->>'parent_job_id' IS NOT NULL
      AND EXISTS (SELECT 1 FROM balances b
                  WHERE b.workspace_id = j.workspace_id AND b.balance_micros > 0)
      AND NOT EXISTS (SELECT 1 FROM key_spend ks WHERE ks.key_id = j.key_id
                      AND ks.day = (now() AT TIME ZONE 'UTC')::date
                      AND ks.spent_micros >= j.daily_cap_micros)
      AND (j.retry_at IS NULL OR j.retry_at <= now())
    ORDER BY j.id
    LIMIT $1
    FOR UPDATE OF j SKIP LOCKED
), children AS (
    SELECT *, row_number() OVER (ORDER BY id) AS place FROM queued_children
), ready AS (
    SELECT w.workspace_id,
           $2 - (SELECT count(*) FROM jobs a
                 WHERE a.workspace_id = w.workspace_id AND a.status IN ('dispatched', 'running')
                   AND a.spec->>'parent_job_id' IS NULL) AS free
    FROM waiting w JOIN balances b ON b.workspace_id = w.workspace_id
    WHERE b.balance_micros > 0
), heads AS (
    SELECT h.*,
           row_number() OVER (PARTITION BY h.workspace_id ORDER BY h.priority DESC, h.id) AS turn
    FROM ready r
    CROSS JOIN LATERAL (
        SELECT j.id, j.workspace_id, j.kind, j.attempt, j.spec, j.submitted_at, j.priority,
               j.answers
        FROM jobs j
        WHERE j.workspace_id = r.workspace_id AND j.status = 'queued'
          AND j.spec->>'parent_job_id' IS NULL
          AND NOT EXISTS (SELECT 1 FROM key_spend ks WHERE ks.key_id = j.key_id
                          AND ks.day = (now() AT TIME ZONE 'UTC')::date
                          AND ks.spent_micros >= j.daily_cap_micros)
          AND (j.retry_at IS NULL OR j.retry_at <= now())
        ORDER BY j.priority DESC, j.id
        LIMIT least(greatest(r.free, 0), $1)
        FOR UPDATE OF j SKIP LOCKED
    ) h
), turns AS (
    SELECT id, workspace_id, kind, attempt, spec, submitted_at, answers,
           (SELECT count(*) FROM children) + row_number() OVER (ORDER BY turn, id) AS place
    FROM heads
), chosen AS (
    SELECT * FROM children
    UNION ALL
    SELECT * FROM turns WHERE place <= $1
), marked AS (
    UPDATE jobs SET status = 'dispatched', attempt = jobs.attempt + 1, dispatched_at = now(),
                    dispatched_attempt = jobs.attempt + 1
    FROM chosen WHERE jobs.id = chosen.id
)
SELECT id, workspace_id, kind, attempt, spec, submitted_at, answers FROM chosen ORDER BY place
"""


class Wakeup:
    """Wakes the dispatcher after a projection's commit, when what it applied said to."""

    def __init__(self, wake: asyncio.Event) -> None:
        self.wake = wake
        self.due = False
        """Set while the batch is applied; a batch that is rolled back at worst wakes it once
        for nothing."""

    async def after_commit(self, _: Sequence[Delivery]) -> None:
        if self.due:
            self.due = False
            self.wake.set()


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
            while await while_away(self.dispatch_once, what="dispatch") == self.batch:
                pass
            await woken(self.wake, poll_seconds)

    async def dispatch_once(self) -> int:
        """Dispatch what may run now; returns how many jobs were looked at."""
        async with self.outbox.transaction() as uow:
            return await self.dispatch_in(uow)

    async def dispatch_in(self, uow: UnitOfWork) -> int:
        """Dispatch within ``uow``'s transaction (the one that queued the jobs, saving a commit
        on every job's path); returns how many jobs were looked at."""
        chosen = await uow.conn.fetch(_DISPATCH, self.batch, self.max_per_workspace)
        if not chosen:
            return 0
        for row in chosen:
            attempt = row["attempt"] + 1
            payload = RunPayload(**row["spec"], attempt=attempt, resume=_resume(row))
            command = RunAgent if payload.kind is JobKind.AGENT else RunFunction
            uow.emit(
                command.new(
                    payload,
                    producer="scheduler",
                    workspace_id=row["workspace_id"],
                    job_id=row["id"],
                ),
            )
        self.dispatched += len(chosen)
        now = datetime.now(UTC)
        for row in chosen:
            DISPATCH_SECONDS.labels(row["kind"]).observe(
                max(0.0, (now - row["submitted_at"]).total_seconds())
            )
        return len(chosen)


def _resume(row: Any) -> ResumeState | None:
    """What a job that waited for input runs on from: its answers."""
    return ResumeState(answers=row["answers"]) if row["answers"] else None
