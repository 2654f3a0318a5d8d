"""Retries of deterministic skills: a failed attempt is queued again after its backoff, as a new
attempt with a retrying event, until the policy's attempts are spent; what the policy does not
cover (bad inputs, agents, cancelled jobs) fails at once."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from puras_common.attempts import ClaimRequest, CompleteRequest
from puras_common.bus import Delivery
from puras_common.events import JobSubmitted
from puras_common.events.jobs import FailedPayload, RetryPolicy
from puras_common.ids import new_id
from puras_common.migrate import service_migrations
from puras_scheduler import queue, retries
from puras_scheduler.attempts import Attempts
from puras_scheduler.dispatch import Dispatcher
from puras_testing import Infra, Scratch, scratch_schema

from .test_dispatch import balance, submitted


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("scheduler", queue.__file__)
    ) as s:
        yield s


async def queued(
    db: Scratch, *, policy: RetryPolicy | None, kind: str = "function"
) -> JobSubmitted:
    ws = uuid.uuid4()
    plain = submitted(ws, kind=kind)
    job = JobSubmitted.new(
        plain.payload.model_copy(update={"retries": policy}),
        producer="test",
        workspace_id=ws,
        job_id=new_id(),
    )
    async with db.outbox.transaction() as uow:
        await queue.apply_job_event(uow, Delivery(job, 1, 1, job.subject, None))  # type: ignore[arg-type]
        await queue.apply_balance(uow, Delivery(balance(ws, 100, 1), 1, 1, "", None))  # type: ignore[arg-type]
    return job


def failed(job: JobSubmitted, attempt: int, reason: str = "exception") -> CompleteRequest:
    compute = {
        "usage_id": str(new_id()),
        "ledger": False,
        "attempt": attempt,
        "kind": "compute",
        "provider": "puras",
        "model": "puras/compute",
        "billed_micros": 0,
        "cpu_ms": 12,
        "wall_ms": 30,
    }
    return CompleteRequest(
        job_id=job.job_id,
        attempt=attempt,
        type="job.failed",
        runner="r",
        payload={
            "attempt": attempt,
            "error": "KeyError: 'missing'",
            "reason": reason,
            "compute": compute,
        },
    )


def claim(job: JobSubmitted, attempt: int) -> ClaimRequest:
    return ClaimRequest(job_id=job.job_id, dispatched_attempt=attempt, delivery=1, runner="r")


async def history(db: Scratch, job: JobSubmitted) -> list[tuple[str, object]]:
    rows = await db.pool.fetch(
        "SELECT type, body->'payload' AS p FROM outbox WHERE body->>'job_id' = $1 ORDER BY seq",
        str(job.job_id),
    )
    return [(r["type"], r["p"].get("attempt")) for r in rows]


async def test_a_failing_job_is_retried_after_its_backoff_until_its_attempts_are_spent(
    db: Scratch,
) -> None:
    attempts = Attempts(db.outbox, max_attempts=3)
    dispatcher = Dispatcher(db.outbox, max_per_workspace=10, batch=10)
    job = await queued(db, policy=RetryPolicy(max_attempts=2, backoff_seconds=30))
    await dispatcher.dispatch_once()
    assert (await attempts.claim(claim(job, 1))).run
    assert (await attempts.complete(failed(job, 1))).accepted
    row = await db.pool.fetchrow(
        "SELECT status, attempt, retry_at - now() AS wait FROM jobs WHERE id = $1", job.job_id
    )
    assert (row["status"], row["attempt"]) == ("queued", 1)
    assert 14 <= row["wait"].total_seconds() <= 30  # 30 s, half of it jittered
    retrying = await db.pool.fetchval(
        "SELECT body->'payload' FROM outbox WHERE type = 'job.retrying' AND subject LIKE $1",
        f"job.{job.job_id}.%",
    )
    assert retrying["attempt"] == 2 and "attempt 1 of 2 failed (exception)" in retrying["reason"]
    assert "KeyError" in retrying["reason"] and 15 <= retrying["retry_in_seconds"] <= 30
    # The failed attempt's compute goes with the event that ends it, here the retry.
    assert (retrying["compute"]["attempt"], retrying["compute"]["cpu_ms"]) == (1, 12)
    assert await dispatcher.dispatch_once() == 0  # not before its backoff
    await db.pool.execute("UPDATE jobs SET retry_at = now() WHERE id = $1", job.job_id)
    assert await dispatcher.dispatch_once() == 1
    assert (await attempts.claim(claim(job, 2))).attempt == 2
    assert (await attempts.complete(failed(job, 2))).accepted
    assert await history(db, job) == [
        ("run.function", 1),
        ("job.retrying", 2),
        ("run.function", 2),
        ("job.failed", 2),
    ]


async def test_what_the_policy_does_not_cover_fails_at_once(db: Scratch) -> None:
    attempts = Attempts(db.outbox, max_attempts=3)
    dispatcher = Dispatcher(db.outbox, max_per_workspace=10, batch=10)
    policy = RetryPolicy(max_attempts=5, backoff_seconds=0)
    bad_inputs = await queued(db, policy=policy)
    no_policy = await queued(db, policy=None)
    await dispatcher.dispatch_once()
    for job, reason in ((bad_inputs, "invalid_inputs"), (no_policy, "exception")):
        assert (await attempts.claim(claim(job, 1))).run
        assert (await attempts.complete(failed(job, 1, reason))).accepted
        assert (await history(db, job))[-1] == ("job.failed", 1)


def test_the_pause_doubles_with_equal_jitter() -> None:
    policy = {"max_attempts": 5, "backoff_seconds": 2}
    failure = FailedPayload(attempt=1, error="x", reason="exception")
    rng = random.Random(7)
    pauses = [
        retries.pause_before(policy, failed_attempt=n, failure=failure, rng=rng)
        for n in (1, 2, 3, 4)
    ]
    for n, pause in enumerate(pauses, start=1):
        assert pause is not None and 2 ** (n - 1) <= pause <= 2**n
    assert retries.pause_before(policy, failed_attempt=5, failure=failure) is None
