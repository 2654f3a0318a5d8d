"""Jobs that wait for input: a question ends the run and frees the slot, a redelivery of that
run's work is refused, an answer dispatches the job again with its answers, and an unanswered
question fails the job at its expiry."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from puras_common.attempts import ClaimRequest, CompleteRequest
from puras_common.events import JobInputProvided, JobSubmitted
from puras_common.events.jobs import InputProvidedPayload, RetryPolicy
from puras_common.migrate import service_migrations
from puras_scheduler import queue
from puras_scheduler.attempts import Attempts
from puras_scheduler.dispatch import Dispatcher
from puras_scheduler.input_requests import InputTimeouts
from puras_testing import Infra, Scratch, scratch_schema

from .test_dispatch import apply, balance, submitted


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("scheduler", queue.__file__)
    ) as s:
        yield s


def question(job: JobSubmitted, attempt: int, request_id: uuid.UUID) -> CompleteRequest:
    return CompleteRequest(
        job_id=job.job_id,
        attempt=attempt,
        type="job.input_requested",
        runner="r1",
        payload={
            "attempt": attempt,
            "request_id": str(request_id),
            "number": 1,
            "prompt": "Which one?",
            "answer_schema": {"type": "string"},
            "timeout_seconds": 60,
        },
    )


def claim(job: JobSubmitted, *, dispatched_attempt: int, delivery: int) -> ClaimRequest:
    return ClaimRequest(
        job_id=job.job_id, dispatched_attempt=dispatched_attempt, delivery=delivery, runner="r1"
    )


def answer(job: JobSubmitted, request_id: uuid.UUID, value: Any) -> JobInputProvided:
    return JobInputProvided.new(
        InputProvidedPayload(request_id=request_id, answer=value),
        producer="test",
        workspace_id=job.workspace_id,
        job_id=job.job_id,
    )


async def row(db: Scratch, job: JobSubmitted) -> Any:
    return await db.pool.fetchrow(
        "SELECT status, attempt, answers, input_request FROM jobs WHERE id = $1", job.job_id
    )


async def test_a_question_frees_the_slot_and_an_answer_dispatches_the_job_again(
    db: Scratch,
) -> None:
    ws = uuid.uuid4()
    dispatcher = Dispatcher(db.outbox, max_per_workspace=1, batch=100)
    attempts = Attempts(db.outbox, max_attempts=3)
    asking, other = submitted(ws, kind="agent"), submitted(ws)
    await apply(db, balance(ws, 100, 1))
    await apply(db, asking)
    await dispatcher.dispatch_once()
    await apply(db, other)
    await dispatcher.dispatch_once()
    assert (await attempts.claim(claim(asking, dispatched_attempt=1, delivery=1))).run
    assert (await row(db, other))["status"] == "queued"  # one slot, held by the asking job

    request_id = uuid.uuid4()
    assert (await attempts.complete(question(asking, 1, request_id))).accepted
    waiting = await row(db, asking)
    assert waiting["status"] == "waiting" and waiting["input_request"]["expires_at"]
    await dispatcher.dispatch_once()
    assert (await row(db, other))["status"] == "dispatched"  # the waiting job holds no slot

    # The asking run's work, redelivered (its runner died before acking): not a lost worker.
    again = await attempts.claim(claim(asking, dispatched_attempt=1, delivery=2))
    assert not again.run and again.reason == "job is waiting for input"
    assert (await row(db, asking))["status"] == "waiting"

    await apply(db, answer(asking, uuid.uuid4(), "not this question"))
    assert (await row(db, asking))["status"] == "waiting"
    await attempts.complete(
        CompleteRequest(
            job_id=other.job_id,
            attempt=1,
            type="job.succeeded",
            runner="r2",
            payload={"attempt": 1, "result": None, "duration_ms": 1},
        )
    )
    await apply(db, answer(asking, request_id, "blue"))
    await dispatcher.dispatch_once()
    resumed = await row(db, asking)
    assert (resumed["status"], resumed["attempt"], resumed["answers"]) == (
        "dispatched",
        2,
        ["blue"],
    )
    work = await db.pool.fetchval(
        "SELECT body->'payload' FROM outbox WHERE type = 'run.agent' AND body->>'job_id' = $1 "
        "ORDER BY seq DESC LIMIT 1",
        str(asking.job_id),
    )
    assert work["attempt"] == 2 and work["resume"] == {"answers": ["blue"]}
    stale = await attempts.claim(claim(asking, dispatched_attempt=1, delivery=3))
    assert not stale.run and stale.reason == "superseded by a later dispatch"
    assert (await attempts.claim(claim(asking, dispatched_attempt=2, delivery=1))).run


async def test_an_unanswered_question_fails_the_job_when_it_expires(db: Scratch) -> None:
    ws = uuid.uuid4()
    attempts = Attempts(db.outbox, max_attempts=3)
    job = submitted(ws)
    await apply(db, balance(ws, 100, 1))
    await apply(db, job)
    await Dispatcher(db.outbox, max_per_workspace=5, batch=100).dispatch_once()
    await attempts.claim(claim(job, dispatched_attempt=1, delivery=1))
    await attempts.complete(question(job, 1, uuid.uuid4()))
    timeouts = InputTimeouts(db.outbox)
    assert await timeouts.sweep() == 0  # not yet
    await db.pool.execute(
        "UPDATE jobs SET input_expires_at = now() - interval '1 second' WHERE id = $1", job.job_id
    )
    assert await timeouts.sweep() == 1
    assert (await row(db, job))["status"] == "failed"
    error = await db.pool.fetchval(
        "SELECT body->'payload'->>'error' FROM outbox WHERE type = 'job.failed' "
        "AND body->>'job_id' = $1",
        str(job.job_id),
    )
    assert error == "no input arrived within 60 s: question 1 went unanswered"
    await apply(db, answer(job, uuid.uuid4(), "late"))
    assert (await row(db, job))["status"] == "failed"


async def test_runs_that_ended_on_questions_do_not_use_up_the_retries(db: Scratch) -> None:
    ws = uuid.uuid4()
    attempts = Attempts(db.outbox, max_attempts=2)
    dispatcher = Dispatcher(db.outbox, max_per_workspace=5, batch=100)
    job = submitted(ws)
    await apply(db, balance(ws, 100, 1))
    await apply(db, job)
    for run in (1, 2):  # two questions, answered: attempts 1 and 2 end on them
        await dispatcher.dispatch_once()
        assert (await attempts.claim(claim(job, dispatched_attempt=run, delivery=1))).run
        request_id = uuid.uuid4()
        assert (await attempts.complete(question(job, run, request_id))).accepted
        await apply(db, answer(job, request_id, f"answer {run}"))
    await dispatcher.dispatch_once()
    assert (await attempts.claim(claim(job, dispatched_attempt=3, delivery=1))).run
    # Attempt 3's worker is lost: the retry it is owed still runs, as attempt 4.
    retry = await attempts.claim(claim(job, dispatched_attempt=3, delivery=2))
    assert (retry.run, retry.attempt) == (True, 4)
    assert (await row(db, job))["answers"] == ["answer 1", "answer 2"]


async def test_a_skills_retry_policy_counts_only_runs_that_failed_or_ran_to_an_end(
    db: Scratch,
) -> None:
    ws = uuid.uuid4()
    attempts = Attempts(db.outbox, max_attempts=3)
    dispatcher = Dispatcher(db.outbox, max_per_workspace=5, batch=100)
    job = submitted(ws)
    spec = job.payload.model_copy(
        update={"retries": RetryPolicy(max_attempts=2, backoff_seconds=0)}
    )
    job = job.model_copy(update={"payload": spec})
    await apply(db, balance(ws, 100, 1))
    await apply(db, job)
    await dispatcher.dispatch_once()
    await attempts.claim(claim(job, dispatched_attempt=1, delivery=1))
    request_id = uuid.uuid4()
    await attempts.complete(question(job, 1, request_id))
    await apply(db, answer(job, request_id, "yes"))
    await dispatcher.dispatch_once()
    await attempts.claim(claim(job, dispatched_attempt=2, delivery=1))
    failed = CompleteRequest(
        job_id=job.job_id,
        attempt=2,
        type="job.failed",
        runner="r1",
        payload={"attempt": 2, "error": "ValueError: no", "reason": "exception"},
    )
    assert (await attempts.complete(failed)).accepted
    assert (await row(db, job))["status"] == "queued"  # its first real run failed: one retry left
