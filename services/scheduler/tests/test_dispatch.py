"""Dispatch: only workspaces with credit, never more than the concurrency limit at once, one
WORK command per job and nothing else, and a job cancelled while queued never runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import (
    BalanceChanged,
    JobCancelRequested,
    JobSpec,
    JobSubmitted,
    JobSucceeded,
)
from puras_common.events.jobs import CancelRequestedPayload, SucceededPayload
from puras_common.events.ledger import BalanceChangedPayload
from puras_common.ids import new_id
from puras_common.migrate import service_migrations
from puras_scheduler import queue
from puras_scheduler.dispatch import _DISPATCH, Dispatcher
from puras_testing import Infra, Scratch, scratch_schema


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("scheduler", queue.__file__)
    ) as s:
        yield s


async def apply(db: Scratch, event: Event) -> list[Event]:
    fold = queue.apply_balance if isinstance(event, BalanceChanged) else queue.apply_job_event
    async with db.outbox.transaction() as uow:
        await fold(uow, Delivery(event, 1, 1, event.subject, None))  # type: ignore[arg-type]
    return uow.events


def submitted(ws: uuid.UUID, kind: str = "function") -> JobSubmitted:
    spec = JobSpec(
        skill_name="echo",
        skillpack_id=uuid.uuid4(),
        skillpack_slug="default",
        owner_workspace_id=ws,
        deployment_id=uuid.uuid4(),
        version=1,
        kind=kind,
        entrypoint="main.py:run",
        timeout_seconds=30,  # type: ignore[arg-type]
        inputs={},
    )
    return JobSubmitted.new(spec, producer="test", workspace_id=ws, job_id=new_id())


def balance(ws: uuid.UUID, micros: int, version: int) -> BalanceChanged:
    return BalanceChanged.new(
        BalanceChangedPayload(balance_micros=micros, version=version),
        producer="test",
        workspace_id=ws,
    )


async def outbox_types(db: Scratch) -> list[str]:
    return [r["type"] for r in await db.pool.fetch("SELECT type FROM outbox ORDER BY seq")]


async def test_jobs_wait_without_credit_and_run_after_a_grant(db: Scratch) -> None:
    ws = uuid.uuid4()
    dispatcher = Dispatcher(db.outbox, max_per_workspace=10, batch=100)
    job = submitted(ws)
    await apply(db, job)
    assert await dispatcher.dispatch_once() == 0
    await apply(db, balance(ws, 0, 1))
    assert await dispatcher.dispatch_once() == 0
    await apply(db, balance(ws, 1_000, 2))
    await dispatcher.dispatch_once()
    assert await outbox_types(db) == ["run.function"]  # the command is the dispatch
    row = await db.pool.fetchrow("SELECT status, attempt FROM jobs WHERE id = $1", job.job_id)
    assert (row["status"], row["attempt"]) == ("dispatched", 1)


async def test_an_older_balance_never_overwrites_a_newer_one(db: Scratch) -> None:
    ws = uuid.uuid4()
    await apply(db, balance(ws, 500, 3))
    await apply(db, balance(ws, -20, 2))  # delivered late
    assert (
        await db.pool.fetchval("SELECT balance_micros FROM balances WHERE workspace_id = $1", ws)
        == 500
    )


async def test_concurrency_per_workspace_is_capped_and_freed_by_terminal_events(
    db: Scratch,
) -> None:
    busy, other = uuid.uuid4(), uuid.uuid4()
    for ws in (busy, other):
        await apply(db, balance(ws, 10_000, 1))
    jobs = [submitted(busy) for _ in range(5)] + [submitted(other, kind="agent")]
    for job in jobs:
        await apply(db, job)
    dispatcher = Dispatcher(db.outbox, max_per_workspace=2, batch=100)
    await dispatcher.dispatch_once()
    counts = {
        r["workspace_id"]: r["n"]
        for r in await db.pool.fetch(
            "SELECT workspace_id, count(*) AS n FROM jobs WHERE status = 'dispatched' GROUP BY 1"
        )
    }
    assert counts == {busy: 2, other: 1}
    assert (await outbox_types(db)).count("run.agent") == 1
    first = await db.pool.fetchval(
        "SELECT id FROM jobs WHERE workspace_id = $1 AND status = 'dispatched' ORDER BY id LIMIT 1",
        busy,
    )
    done = JobSucceeded.new(
        SucceededPayload(attempt=1, result={}, duration_ms=1),
        producer="test",
        workspace_id=busy,
        job_id=first,
    )
    await apply(db, done)
    await dispatcher.dispatch_once()
    assert (
        await db.pool.fetchval(
            "SELECT count(*) FROM jobs WHERE workspace_id = $1 AND status = 'dispatched'", busy
        )
        == 2
    )


async def test_cancel_while_queued_cancels_at_once_and_never_dispatches(db: Scratch) -> None:
    ws = uuid.uuid4()
    job = submitted(ws)
    await apply(db, job)
    emitted = await apply(
        db,
        JobCancelRequested.new(
            CancelRequestedPayload(), producer="test", workspace_id=ws, job_id=job.job_id
        ),
    )
    assert [e.type for e in emitted] == ["job.cancelled"] and emitted[
        0
    ].payload.reason == "cancelled while queued"
    await apply(db, balance(ws, 1_000, 1))
    assert await Dispatcher(db.outbox, max_per_workspace=5, batch=10).dispatch_once() == 0


async def test_a_subagent_never_waits_behind_its_parents_slot(db: Scratch) -> None:
    ws = uuid.uuid4()
    await apply(db, balance(ws, 1_000_000, 1))
    dispatcher = Dispatcher(db.outbox, max_per_workspace=1, batch=2)
    root = submitted(ws)
    await apply(db, root)
    await dispatcher.dispatch_once()
    # The workspace is at its limit (the root runs); more roots wait, but the root's child and
    # grandchild are dispatched at once, on the children's work subject, ahead of the queue.
    waiting = [submitted(ws) for _ in range(3)]
    for job in waiting:
        await apply(db, job)
    child = _child_of(ws, root.job_id)  # type: ignore[arg-type]
    await apply(db, child)
    grandchild = _child_of(ws, child.job_id, kind="agent")  # type: ignore[arg-type]
    await apply(db, grandchild)
    await dispatcher.dispatch_once()
    await dispatcher.dispatch_once()
    status = {
        r["id"]: r["status"]
        for r in await db.pool.fetch("SELECT id, status FROM jobs WHERE workspace_id = $1", ws)
    }
    assert status[child.job_id] == status[grandchild.job_id] == "dispatched"
    assert [status[j.job_id] for j in waiting] == ["queued"] * 3
    subjects = {
        r["job_id"]: r["subject"]
        for r in await db.pool.fetch(
            "SELECT (body->>'job_id')::uuid AS job_id, subject FROM outbox WHERE type IN ('run.function', 'run.agent') AND (body->>'job_id')::uuid = ANY($1)",
            [root.job_id, child.job_id, grandchild.job_id],
        )
    }
    assert subjects == {
        root.job_id: "run.function",
        child.job_id: "run.function.child",
        grandchild.job_id: "run.agent.child",
    }


def _child_of(ws: uuid.UUID, parent: uuid.UUID, *, kind: str = "function") -> JobSubmitted:
    job = submitted(ws, kind)
    return JobSubmitted.new(
        job.payload.model_copy(update={"parent_job_id": parent}),
        producer="test",
        workspace_id=ws,
        job_id=uuid.uuid4(),
    )


async def _backlog(db: Scratch, ws: uuid.UUID, n: int) -> None:
    """``n`` queued jobs of ``ws`` (ids time-ordered, as the gateway mints them), written straight into the queue (folding 10,000 events one
    by one would only slow the test down)."""
    spec = submitted(ws).payload.model_dump(mode="json")
    await db.pool.executemany(
        """INSERT INTO jobs (id, workspace_id, kind, spec, submitted_at)
           VALUES ($1, $2, 'function', $3, now())""",
        [(new_id(), ws, spec) for _ in range(n)],
    )


async def dispatched_ids(db: Scratch) -> list[uuid.UUID]:
    return [
        r["job_id"]
        for r in await db.pool.fetch(
            "SELECT (body->>'job_id')::uuid AS job_id FROM outbox WHERE type LIKE 'run.%' ORDER BY seq"
        )
    ]


async def test_a_backlog_of_ten_thousand_never_delays_another_workspaces_first_job(
    db: Scratch,
) -> None:
    busy, quiet = uuid.uuid4(), uuid.uuid4()
    for ws in (busy, quiet):
        await apply(db, balance(ws, 10**9, 1))
    await _backlog(db, busy, 10_000)
    first = submitted(quiet)
    await apply(db, first)  # submitted after the whole backlog
    dispatcher = Dispatcher(db.outbox, max_per_workspace=100_000, batch=64)
    assert await dispatcher.dispatch_once() == 64
    # The very first round takes the quiet workspace's job, in its first turn (second place:
    # the busy workspace's head was waiting longer), and the backlog fills the rest.
    order = await dispatched_ids(db)
    assert order.index(first.job_id) == 1
    assert len(order) == 64
    second = submitted(quiet)
    await apply(db, second)
    await dispatcher.dispatch_once()
    assert (await dispatched_ids(db)).index(second.job_id) < 64 + 2


async def test_priority_orders_a_workspaces_own_queue_only(db: Scratch) -> None:
    ws, other = uuid.uuid4(), uuid.uuid4()
    for w in (ws, other):
        await apply(db, balance(w, 10**6, 1))

    def with_priority(w: uuid.UUID, priority: int) -> JobSubmitted:
        job = submitted(w)
        return JobSubmitted.new(
            job.payload.model_copy(update={"priority": priority}),
            producer="test",
            workspace_id=w,
            job_id=new_id(),
        )

    low, normal, high = with_priority(ws, -10), with_priority(ws, 0), with_priority(ws, 10)
    theirs = with_priority(other, -5)
    for job in (low, normal, high, theirs):
        await apply(db, job)
    await Dispatcher(db.outbox, max_per_workspace=10, batch=10).dispatch_once()
    order = await dispatched_ids(db)
    # The workspace's own queue runs high, normal, low; the other workspace's low-priority job
    # still has its turn among the first.
    assert [j for j in order if j != theirs.job_id] == [high.job_id, normal.job_id, low.job_id]
    assert order.index(theirs.job_id) <= 1


def _jobs_rows_read(node: dict[str, Any]) -> int:
    """Rows of the ``jobs`` table a plan node and its children read, kept or filtered out."""
    own = 0
    if node.get("Relation Name") == "jobs" and "Scan" in node["Node Type"]:
        kept_or_dropped = (
            node["Actual Rows"]
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
        )
        own = kept_or_dropped * node["Actual Loops"]
    return own + sum(_jobs_rows_read(child) for child in node.get("Plans", ()))


async def _dispatch_reads(db: Scratch, *, batch: int, max_per_workspace: int) -> int:
    """How many rows of ``jobs`` the dispatch statement reads, run under EXPLAIN ANALYZE and
    rolled back."""
    async with db.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            plan = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + _DISPATCH, batch, max_per_workspace
            )
        finally:
            await transaction.rollback()
    [root] = json.loads(plan) if isinstance(plan, str) else plan
    return _jobs_rows_read(root["Plan"])


async def test_choosing_the_next_jobs_reads_the_heads_of_the_queues_not_the_backlog(
    db: Scratch,
) -> None:
    """The dispatcher runs on every submit and every finished job: if it read the whole backlog
    each time, a queue of thousands would cost thousands of rows per job."""
    busy, quiet = uuid.uuid4(), uuid.uuid4()
    for ws in (busy, quiet):
        await apply(db, balance(ws, 10**9, 1))
    await apply(db, submitted(quiet))
    await _backlog(db, busy, 5_000)
    await db.pool.execute("ANALYZE jobs")
    read = await _dispatch_reads(db, batch=16, max_per_workspace=4)
    assert read <= 32, f"the dispatch read {read} rows of jobs to choose 5 of 5,001"
    # And the statement still chooses what it chose: the quiet workspace's job and four of the busy one's.
    assert await Dispatcher(db.outbox, max_per_workspace=4, batch=16).dispatch_once() == 5


async def test_a_balance_change_calls_for_a_dispatch_only_when_it_brings_credit(
    db: Scratch,
) -> None:
    """Every charge moves a balance; only credit for a workspace that had none can let a queued
    job go, so only that wakes the dispatcher."""
    ws = uuid.uuid4()

    async def credited(micros: int, version: int) -> bool:
        event = balance(ws, micros, version)
        async with db.outbox.transaction() as uow:
            return await queue.apply_balance(uow, Delivery(event, 1, 1, event.subject, None))  # type: ignore[arg-type]

    assert await credited(0, 1) is False
    assert await credited(1_000, 2) is True
    assert await credited(400, 3) is False  # a charge
    assert await credited(1_000, 2) is False  # an old version, applied again
    assert await credited(-5, 4) is False
    assert await credited(1, 5) is True
