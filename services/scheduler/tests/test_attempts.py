"""Attempt fencing: claims and completions through the scheduler."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from nats.aio.client import Client as NATS
from puras_common.attempts import ClaimRequest, CompleteRequest
from puras_common.bus import Delivery, Holdings
from puras_common.events import JobCancelRequested, JobSubmitted
from puras_common.events.jobs import CancelRequestedPayload
from puras_common.migrate import service_migrations
from puras_scheduler import queue
from puras_scheduler.attempts import Attempts
from puras_scheduler.watchdog import Watchdog
from puras_testing import Infra, Scratch, scratch_schema

from .test_dispatch import balance, submitted


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("scheduler", queue.__file__)
    ) as s:
        yield s


async def dispatched(db: Scratch, *, kind: str = "function") -> JobSubmitted:
    """A job submitted, funded and dispatched (attempt 1)."""
    from puras_scheduler.dispatch import Dispatcher

    ws = uuid.uuid4()
    job = submitted(ws, kind=kind)
    async with db.outbox.transaction() as uow:
        await queue.apply_job_event(uow, Delivery(job, 1, 1, job.subject, None))  # type: ignore[arg-type]
        await queue.apply_balance(uow, Delivery(balance(ws, 100, 1), 1, 1, "", None))  # type: ignore[arg-type]
    await Dispatcher(db.outbox, max_per_workspace=100, batch=1000).dispatch_once()
    return job


def claim(job: JobSubmitted, delivery: int, runner: str = "r1") -> ClaimRequest:
    return ClaimRequest(job_id=job.job_id, dispatched_attempt=1, delivery=delivery, runner=runner)


def done(job: JobSubmitted, attempt: int, result: object = "ok") -> CompleteRequest:
    return CompleteRequest(
        job_id=job.job_id,
        attempt=attempt,
        type="job.succeeded",
        runner="r",
        payload={"attempt": attempt, "result": result, "duration_ms": 1},
    )


async def events_of(db: Scratch, job: JobSubmitted) -> list[str]:
    """What the scheduler emitted about ``job``: its work commands and its events, in order."""
    rows = await db.pool.fetch(
        "SELECT type FROM outbox WHERE body->>'job_id' = $1 ORDER BY seq", str(job.job_id)
    )
    return [r["type"] for r in rows]


async def test_a_redelivery_becomes_a_new_attempt_and_only_it_may_finish(db: Scratch) -> None:
    attempts = Attempts(db.outbox, max_attempts=3)
    job = await dispatched(db)
    first = await attempts.claim(claim(job, delivery=1))
    assert (first.run, first.attempt) == (True, 1)
    second = await attempts.claim(claim(job, delivery=2, runner="r2"))  # r1 went silent
    assert (second.run, second.attempt) == (True, 2)
    stale = await attempts.complete(done(job, 1, result="stale"))
    assert not stale.accepted and stale.reason == "attempt 1 was superseded by attempt 2"
    assert (await attempts.complete(done(job, 2))).accepted
    assert (
        await attempts.complete(done(job, 2))
    ).accepted  # the runner's retry is answered, not repeated
    assert await events_of(db, job) == ["run.function", "job.retrying", "job.succeeded"]
    payload = await db.pool.fetchval(
        "SELECT body->'payload' FROM outbox WHERE type = 'job.succeeded' AND subject LIKE $1",
        f"job.{job.job_id}.%",
    )
    assert payload["result"] == "ok" and payload["attempt"] == 2


async def test_agentic_jobs_are_never_run_twice(db: Scratch) -> None:
    attempts = Attempts(db.outbox, max_attempts=3)
    job = await dispatched(db, kind="agent")
    assert (await attempts.claim(claim(job, 1))).run
    again = await attempts.claim(claim(job, 2))
    assert not again.run
    assert await events_of(db, job) == ["run.agent", "job.failed"]
    error = await db.pool.fetchval(
        "SELECT body->'payload'->>'error' FROM outbox WHERE type = 'job.failed' AND subject LIKE $1",
        f"job.{job.job_id}.%",
    )
    assert error.startswith("worker lost") and "not run twice" in error


async def test_attempts_are_bounded(db: Scratch) -> None:
    attempts = Attempts(db.outbox, max_attempts=2)
    job = await dispatched(db)
    assert (await attempts.claim(claim(job, 1))).attempt == 1
    assert (await attempts.claim(claim(job, 2))).attempt == 2
    assert not (await attempts.claim(claim(job, 3))).run
    assert (await events_of(db, job))[-1] == "job.failed"


async def test_a_job_cancelled_before_it_starts_is_not_run(db: Scratch) -> None:
    attempts = Attempts(db.outbox, max_attempts=3)
    job = await dispatched(db)
    cancel = JobCancelRequested.new(
        CancelRequestedPayload(), producer="t", workspace_id=job.workspace_id, job_id=job.job_id
    )
    async with db.outbox.transaction() as uow:
        await queue.apply_job_event(uow, Delivery(cancel, 1, 1, cancel.subject, None))  # type: ignore[arg-type]
    reply = await attempts.claim(claim(job, 1))
    assert not reply.run and reply.reason == "cancelled"
    assert (await events_of(db, job))[-1] == "job.cancelled"


async def test_the_watchdog_fails_jobs_whose_worker_vanished(db: Scratch) -> None:
    attempts = Attempts(db.outbox, max_attempts=3)
    job = await dispatched(db)
    await attempts.claim(claim(job, 1))
    watchdog = Watchdog(db.outbox, grace_seconds=60)
    assert await watchdog.sweep() == 0
    await db.pool.execute(
        "UPDATE jobs SET started_at = now() - interval '95 seconds' WHERE id = $1", job.job_id
    )
    assert await watchdog.sweep() == 1  # timeout 30 s + grace 60 s passed
    assert (await events_of(db, job))[-1] == "job.failed"
    assert not (await attempts.complete(done(job, 1))).accepted  # the lost worker's late result


async def test_requests_decided_in_one_batch_see_each_others_effects(db: Scratch) -> None:
    attempts = Attempts(db.outbox, max_attempts=3)
    job, other = await dispatched(db), await dispatched(db)
    replies = await attempts.claim_batch(
        [claim(job, 1), claim(other, 1), claim(job, 2, runner="r2")]
    )
    assert [(r.run, r.attempt) for r in replies] == [(True, 1), (True, 1), (True, 2)]
    outcomes = await attempts.complete_batch(
        [done(job, 1, "stale"), done(job, 2), done(other, 1), done(job, 2)]
    )
    assert [o.accepted for o in outcomes] == [False, True, True, True]
    assert await events_of(db, job) == ["run.function", "job.retrying", "job.succeeded"]
    assert await events_of(db, other) == ["run.function", "job.succeeded"]


async def test_a_redelivery_of_work_still_running_waits_instead_of_costing_an_attempt(
    db: Scratch, nc: NATS
) -> None:
    # After a NATS restart JetStream may redeliver work whose runner is alive and running it.
    holdings = Holdings()
    sub = await holdings.serve(nc, service="agent-runner", instance="runner-a")
    try:
        attempts = Attempts(db.outbox, max_attempts=3, nc=nc)
        job = await dispatched(db, kind="agent")
        assert (await attempts.claim(claim(job, 1))).run
        holdings.add(str(job.job_id), 1)
        again = await attempts.claim(claim(job, 2, runner="r2"))
        assert not again.run and again.wait_seconds > 0
        assert await events_of(db, job) == ["run.agent"]  # not failed, not retried
        assert (await attempts.complete(done(job, 1))).accepted  # the first delivery finishes it
        holdings.discard(str(job.job_id), 1)
        last = await attempts.claim(claim(job, 2, runner="r2"))
        assert not last.run and last.wait_seconds == 0 and "succeeded" in last.reason
        # Had the holder really died, the redelivery is a lost worker, as before.
        lost = await dispatched(db, kind="agent")
        assert (await attempts.claim(claim(lost, 1))).run
        assert not (await attempts.claim(claim(lost, 2))).run
        assert (await events_of(db, lost))[-1] == "job.failed"
    finally:
        await sub.unsubscribe()


async def test_a_claim_sent_again_gets_the_same_answer(db: Scratch) -> None:
    # The runner's first request timed out (the scheduler or NATS restarted) after the
    # scheduler had decided it; the runner asks again, and must not be taken for a lost worker.
    attempts = Attempts(db.outbox, max_attempts=3)
    job = await dispatched(db)
    for _ in range(4):
        reply = await attempts.claim(claim(job, delivery=1, runner="r1"))
        assert (reply.run, reply.attempt) == (True, 1)
    assert await events_of(db, job) == ["run.function"]
    batch = await attempts.claim_batch([claim(job, 1, runner="r1"), claim(job, 1, runner="r1")])
    assert [(r.run, r.attempt) for r in batch] == [(True, 1), (True, 1)]
    assert (await attempts.claim(claim(job, delivery=2, runner="r2"))).attempt == 2
