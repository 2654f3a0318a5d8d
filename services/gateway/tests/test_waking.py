"""A job's end wakes this gateway's waiters as soon as the batch that records it commits,
without waiting for the database's notification of the same commit to come back."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import JobStarted, JobSucceeded
from puras_common.events.jobs import StartedPayload, SucceededPayload
from puras_gateway import jobs
from puras_gateway.notify import JOBS_CHANNEL, Notifier

pytestmark = pytest.mark.asyncio(loop_scope="session")


def delivered(event: Event) -> Delivery:
    msg: Any = None  # ended_here reads only the event
    return Delivery(event, 1, 1, event.subject, msg)


async def test_a_committed_end_wakes_the_jobs_waiters_and_nothing_else_does() -> None:
    notifier = Notifier("postgresql://unused", schema="gateway")  # never connected
    ws, ended, running = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    succeeded = JobSucceeded.new(
        SucceededPayload(attempt=1, result={"ok": True}, duration_ms=1),
        producer="scheduler",
        workspace_id=ws,
        job_id=ended,
    )
    started = JobStarted.new(
        StartedPayload(attempt=1, runner="function-runner"),
        producer="function-runner",
        workspace_id=ws,
        job_id=running,
    )
    with (
        notifier.watch(JOBS_CHANNEL, str(ended)) as end_seen,
        notifier.watch(JOBS_CHANNEL, str(running)) as other_seen,
    ):
        await jobs.ended_here(notifier, [delivered(started)])
        assert not end_seen.is_set() and not other_seen.is_set()
        await jobs.ended_here(notifier, [delivered(started), delivered(succeeded)])
        assert end_seen.is_set() and not other_seen.is_set()
