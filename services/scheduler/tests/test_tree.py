"""Subagent trees end with their root: a parent's end or cancellation cancels its children (a
queued child at once, a running one by a request its runner acts on, which carries on down the
tree), and a child submitted after its parent ended never runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import JobCancelRequested, JobSubmitted
from puras_common.events.jobs import CancelRequestedPayload
from puras_common.migrate import service_migrations
from puras_scheduler import queue
from puras_scheduler.attempts import Attempts
from puras_scheduler.dispatch import Dispatcher
from puras_testing import Infra, Scratch, scratch_schema

from .test_attempts import claim, done
from .test_dispatch import _child_of, balance, submitted


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("scheduler", queue.__file__)
    ) as s:
        yield s


async def fold(db: Scratch, event: Event) -> list[Event]:
    """Apply one event as the scheduler's projection does; returns what it emitted."""
    fold = queue.apply_balance if event.type == "balance.changed" else queue.apply_job_event
    async with db.outbox.transaction() as uow:
        await fold(uow, Delivery(event, 1, 1, event.subject, None))  # type: ignore[arg-type]
    return uow.events


async def status(db: Scratch, *jobs: JobSubmitted) -> list[str]:
    return [await db.pool.fetchval("SELECT status FROM jobs WHERE id = $1", j.job_id) for j in jobs]


async def tree(db: Scratch) -> tuple[JobSubmitted, JobSubmitted, JobSubmitted, JobSubmitted]:
    """root (running) → child (running) → grandchild (queued); root → queued sibling."""
    ws = uuid.uuid4()
    await fold(db, balance(ws, 10_000, 1))
    attempts = Attempts(db.outbox, max_attempts=3)
    root = submitted(ws)
    await fold(db, root)
    await Dispatcher(db.outbox, max_per_workspace=5, batch=100).dispatch_once()
    assert (await attempts.claim(claim(root, 1))).run
    child = _child_of(ws, root.job_id, kind="agent")  # type: ignore[arg-type]
    await fold(db, child)
    await Dispatcher(db.outbox, max_per_workspace=5, batch=100).dispatch_once()
    assert (await attempts.claim(claim(child, 1))).run
    grandchild = _child_of(ws, child.job_id)  # type: ignore[arg-type]
    sibling = _child_of(ws, root.job_id)  # type: ignore[arg-type]
    await fold(db, grandchild)
    await fold(db, sibling)
    return root, child, grandchild, sibling


async def test_cancelling_a_root_travels_down_the_tree(db: Scratch) -> None:
    root, child, grandchild, sibling = await tree(db)
    request = JobCancelRequested.new(
        CancelRequestedPayload(),
        producer="gateway",
        workspace_id=root.workspace_id,
        job_id=root.job_id,
    )
    emitted = await fold(db, request)
    # The queued sibling is cancelled at once; the running child is asked to stop.
    assert [(e.type, e.job_id) for e in emitted] == sorted(
        [("job.cancelled", sibling.job_id), ("job.cancel_requested", child.job_id)],
        key=lambda t: str(t[1]),
    )
    assert await status(db, child, grandchild, sibling) == ["running", "queued", "cancelled"]
    # The child's request comes back through the stream and reaches the grandchild.
    (asked,) = [e for e in emitted if e.type == "job.cancel_requested"]
    further = await fold(db, asked)
    assert [(e.type, e.job_id) for e in further] == [("job.cancelled", grandchild.job_id)]
    assert "cancelled with its parent job" in further[0].payload.reason  # type: ignore[attr-defined]
    # Asking twice changes nothing.
    assert await fold(db, asked) == []


async def test_a_parent_that_ends_takes_its_children_with_it(db: Scratch) -> None:
    root, child, _grandchild, sibling = await tree(db)
    attempts = Attempts(db.outbox, max_attempts=3)
    assert (await attempts.complete(done(root, 1))).accepted
    assert await status(db, root, child, sibling) == ["succeeded", "running", "cancelled"]
    asked = await db.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE type = 'job.cancel_requested' AND subject = $1",
        f"job.{child.job_id}.cancel_requested",
    )
    assert asked == 1
    # A late child of the ended root never runs.
    late = _child_of(root.workspace_id, root.job_id)  # type: ignore[arg-type]
    (cancelled,) = await fold(db, late)
    assert (
        cancelled.type == "job.cancelled"
        and f"its parent job {root.job_id} had already succeeded" in cancelled.payload.reason
    )  # type: ignore[attr-defined]
    await Dispatcher(db.outbox, max_per_workspace=5, batch=100).dispatch_once()
    assert await status(db, late) == ["cancelled"]
