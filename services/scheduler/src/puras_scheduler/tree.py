"""Subagent trees: a job's children end with it.

When a job ends (any way) or is asked to cancel, each child that has not ended is cancelled: a
queued child at once, a dispatched or running one by a ``job.cancel_requested`` of its own,
which its runner acts on and which comes back here to cancel that child's children in turn, so
the request travels down the whole tree. A child submitted after its parent ended, or while
the parent was being cancelled, is cancelled before it can run.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from puras_common.api import TERMINAL_SQL, TERMINAL_STATUSES
from puras_common.events import JobCancelled, JobCancelRequested, JobFailed
from puras_common.events.jobs import CancelledPayload, CancelRequestedPayload, FailedPayload
from puras_common.outbox import UnitOfWork

PRODUCER = "scheduler"


async def fail(uow: UnitOfWork, row: Any, payload: FailedPayload) -> None:
    """The scheduler fails the job of ``row`` (``id``, ``workspace_id``) itself (no runner will
    report it), and cancels what is left of its subagent tree."""
    uow.emit(
        JobFailed.new(
            payload, producer=PRODUCER, workspace_id=row["workspace_id"], job_id=row["id"]
        )
    )
    await end_children(uow, row["id"], why=f"cancelled: its parent job {row['id']} failed")


async def end_children(uow: UnitOfWork, parent_id: UUID, *, why: str) -> int:
    """Cancel every child of ``parent_id`` that has not ended; returns how many."""
    rows = await uow.conn.fetch(
        f"""SELECT id, workspace_id, status, cancel_requested_at FROM jobs
           WHERE spec->>'parent_job_id' = $1 AND status NOT IN {TERMINAL_SQL}
           ORDER BY id FOR UPDATE""",
        str(parent_id),
    )
    for row in rows:
        if row["status"] == "queued":
            await uow.conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = $1", row["id"]
            )
            uow.emit(
                JobCancelled.new(
                    CancelledPayload(attempt=None, reason=why),
                    producer=PRODUCER,
                    workspace_id=row["workspace_id"],
                    job_id=row["id"],
                )
            )
        elif row["cancel_requested_at"] is None:
            await uow.conn.execute(
                "UPDATE jobs SET cancel_requested_at = now() WHERE id = $1", row["id"]
            )
            uow.emit(
                JobCancelRequested.new(
                    CancelRequestedPayload(),
                    producer=PRODUCER,
                    workspace_id=row["workspace_id"],
                    job_id=row["id"],
                )
            )
    return len(rows)


async def orphaned(uow: UnitOfWork, parent_id: UUID) -> str | None:
    """Why a child of ``parent_id`` must not run (its parent ended or is being cancelled), or None."""
    parent = await uow.conn.fetchrow(
        "SELECT status, cancel_requested_at FROM jobs WHERE id = $1 FOR SHARE", parent_id
    )
    if parent is None:
        return None
    if parent["status"] in TERMINAL_STATUSES:
        return f"its parent job {parent_id} had already {parent['status']}"
    if parent["cancel_requested_at"] is not None:
        return f"its parent job {parent_id} was being cancelled"
    return None
