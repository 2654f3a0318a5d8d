"""Why a queued job waits: each reason from the queue's own state, its place in its workspace's
queue, an announcement only when the reason changes, and a spent cap failing the job at once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest_asyncio
from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import JobSubmitted, LedgerPosted
from puras_common.events.ledger import BilledUsage, LedgerPostedPayload
from puras_common.ids import new_id
from puras_common.migrate import service_migrations
from puras_scheduler import queue, waiting
from puras_scheduler.dispatch import Dispatcher
from puras_scheduler.waiting import Waiting
from puras_testing import Infra, Scratch, scratch_schema

from .test_dispatch import apply, balance, submitted


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("scheduler", queue.__file__)
    ) as s:
        yield s


def keyed(ws: uuid.UUID, key: uuid.UUID, cap: int) -> JobSubmitted:
    job = submitted(ws)
    return JobSubmitted.new(
        job.payload.model_copy(update={"key_id": key, "daily_cap_micros": cap}),
        producer="test",
        workspace_id=ws,
        job_id=new_id(),
    )


def charged(ws: uuid.UUID, key: uuid.UUID, micros: int) -> LedgerPosted:
    return LedgerPosted.new(
        LedgerPostedPayload(
            entry_id=uuid.uuid4(),
            kind="charge",
            amount_micros=-micros,
            balance_micros=10**6,
            version=2,
            source_event_id=uuid.uuid4(),
            key_id=key,
            usage=BilledUsage(
                kind="llm",
                provider="gemini",
                model="gemini/2.5-flash",
                units="0",
                unit="token",
                billed_micros=micros,
                recorded_at=datetime.now(UTC),
            ),
        ),
        producer="test",
        workspace_id=ws,
    )


async def fold_spend(db: Scratch, event: Event) -> None:
    async with db.outbox.transaction() as uow:
        await waiting.apply_spend(uow, Delivery(event, 1, 1, event.subject, None))  # type: ignore[arg-type]


async def announced(db: Scratch) -> list[tuple[uuid.UUID, str, int | None]]:
    return [
        (uuid.UUID(r["job_id"]), r["reason"], r["position"])
        for r in await db.pool.fetch(
            """SELECT body->>'job_id' AS job_id, body->'payload'->>'reason' AS reason,
                      (body->'payload'->>'queue_position')::int AS position
               FROM outbox WHERE type = 'job.wait_changed' ORDER BY seq"""
        )
    ]


async def test_each_reason_and_its_announcement(db: Scratch) -> None:
    ws = uuid.uuid4()
    reasons = Waiting(db.outbox, max_per_workspace=1)
    dispatcher = Dispatcher(db.outbox, max_per_workspace=1, batch=10)
    first, second, third = submitted(ws), submitted(ws), submitted(ws)
    for job in (first, second, third):
        await apply(db, job)
    ids = [first.job_id, second.job_id, third.job_id]
    # No balance yet: all three wait for credit, and say so once.
    told = await reasons.explain(ws, ids)
    assert {w.reason for w in told.values()} == {"no_credit"}
    assert [told[i].queue_position for i in ids] == [1, 2, 3]
    await reasons.sweep()
    await reasons.sweep()
    assert [(j, r) for j, r, _ in await announced(db)] == [(i, "no_credit") for i in sorted(ids)]
    # Credit arrives: one runs (the limit is 1), the next two wait on the limit.
    await apply(db, balance(ws, 10**6, 1))
    await dispatcher.dispatch_once()
    told = await reasons.explain(ws, ids)
    assert told[first.job_id].reason == "queue" and told[first.job_id].queue_position is None
    assert (told[second.job_id].reason, told[second.job_id].queue_position) == (
        "concurrency_limit",
        1,
    )
    assert (told[third.job_id].reason, told[third.job_id].queue_position) == (
        "concurrency_limit",
        2,
    )
    # The dispatched one is not taken by a runner for a while: no_runner.
    await db.pool.execute(
        "UPDATE jobs SET dispatched_at = now() - interval '1 minute' WHERE id = $1", first.job_id
    )
    assert (await reasons.explain(ws, [first.job_id]))[first.job_id].reason == "no_runner"
    await reasons.sweep()
    assert (await announced(db))[3:] == sorted(
        [
            (first.job_id, "no_runner", None),
            (second.job_id, "concurrency_limit", 1),
            (third.job_id, "concurrency_limit", 2),
        ]
    )
    # A job that is running or ended is not waiting: no answer for it.
    await db.pool.execute("UPDATE jobs SET status = 'running' WHERE id = $1", first.job_id)
    assert first.job_id not in await reasons.explain(ws, ids)


async def test_a_job_behind_its_workspaces_queue_waits_for_the_queue(db: Scratch) -> None:
    ws, other = uuid.uuid4(), uuid.uuid4()
    await apply(db, balance(ws, 10**6, 1))
    job = submitted(ws)
    await apply(db, job)
    told = await Waiting(db.outbox, max_per_workspace=5).explain(ws, [job.job_id])
    assert (told[job.job_id].reason, told[job.job_id].queue_position) == ("queue", 1)
    # Another workspace cannot ask about it.
    assert await Waiting(db.outbox, max_per_workspace=5).explain(other, [job.job_id]) == {}
    await Waiting(db.outbox, max_per_workspace=5).sweep()
    assert await announced(db) == []  # 'queue' is what its queued event already said


async def test_a_deep_queue_does_not_change_reason_each_time_a_slot_frees(db: Scratch) -> None:
    """A workspace at its limit with a backlog: when one of its jobs ends, only the job a free
    slot would take changes reason; the rest still wait for the limit. (Every queued job used to
    flip between ``concurrency_limit`` and ``queue`` as the running count moved around the
    limit: an announcement per queued job at every sweep, from a backlog of any size.)"""
    ws = uuid.uuid4()
    await apply(db, balance(ws, 10**6, 1))
    jobs = [submitted(ws) for _ in range(7)]
    for job in jobs:
        await apply(db, job)
    await Dispatcher(db.outbox, max_per_workspace=2, batch=10).dispatch_once()
    reasons = Waiting(db.outbox, max_per_workspace=2)
    await reasons.sweep()
    queued = [job.job_id for job in jobs[2:]]
    assert await announced(db) == [(i, "concurrency_limit", n) for n, i in enumerate(queued, 1)]
    # One of the two running ends: a slot is free for the head of the queue, not for the rest.
    await db.pool.execute("UPDATE jobs SET status = 'succeeded' WHERE id = $1", jobs[0].job_id)
    told = await reasons.explain(ws, queued)
    assert [(told[i].reason, told[i].queue_position) for i in queued] == [
        ("queue", 1),
        *(("concurrency_limit", n) for n in range(2, 6)),
    ]
    await reasons.sweep()
    assert (await announced(db))[5:] == [(queued[0], "queue", 1)]


async def test_a_spent_cap_fails_its_keys_queued_jobs_at_once(db: Scratch) -> None:
    ws, key = uuid.uuid4(), uuid.uuid4()
    await apply(db, balance(ws, 10**6, 1))
    reasons = Waiting(db.outbox, max_per_workspace=5)
    dispatcher = Dispatcher(db.outbox, max_per_workspace=5, batch=10)
    await fold_spend(db, charged(ws, key, 600))
    under = keyed(ws, key, 1_000)
    await apply(db, under)
    await fold_spend(db, charged(ws, key, 400))  # the key has now spent its 1,000
    capped = keyed(ws, key, 1_000)
    await apply(db, capped)
    assert (await reasons.explain(ws, [capped.job_id]))[capped.job_id].reason == "spend_cap"
    assert await dispatcher.dispatch_once() == 0  # never handed to a runner
    await reasons.sweep()
    rows = {
        r["id"]: r["status"]
        for r in await db.pool.fetch("SELECT id, status FROM jobs WHERE workspace_id = $1", ws)
    }
    assert rows == {under.job_id: "failed", capped.job_id: "failed"}
    failed = await db.pool.fetch(
        "SELECT body->'payload' AS p FROM outbox WHERE type = 'job.failed' ORDER BY seq"
    )
    assert len(failed) == 2
    payload = failed[0]["p"]
    assert payload["reason"] == "spend_cap_reached"
    assert "spent 1000 micros" in payload["error"]
    assert payload["error_detail"]["daily_cap_micros"] == 1_000
