"""A job's end wakes this gateway's waiters as soon as the batch that records it commits,
without waiting for the database's notification of the same commit to come back; and a job's
events shown to a client are confirmed, and its readers woken, once the read model holds them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import JobStarted, JobSucceeded
from puras_common.events.jobs import StartedPayload, SucceededPayload
from puras_gateway import live as live_module
from puras_gateway import waiting
from puras_gateway.live import LiveJobs
from puras_gateway.notify import JOBS_CHANNEL, PROJECTED, Notifier

pytestmark = pytest.mark.asyncio(loop_scope="session")


def delivered(event: Event, seq: int = 1) -> Delivery:
    msg: Any = None  # committed reads only the event and its sequence
    return Delivery(event, seq, 1, event.subject, msg)


def unconnected() -> tuple[Notifier, LiveJobs]:
    js: Any = None  # the bookkeeping under test never reaches the server
    return Notifier("postgresql://unused", schema="gateway"), LiveJobs(js)


async def test_a_committed_end_wakes_the_jobs_waiters_and_nothing_else_does() -> None:
    notifier, live = unconnected()
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
        await waiting.committed(notifier, live, [delivered(started)])
        assert not end_seen.is_set() and not other_seen.is_set()
        await waiting.committed(notifier, live, [delivered(started), delivered(succeeded)])
        assert end_seen.is_set() and not other_seen.is_set()


async def test_a_shown_event_is_unconfirmed_until_a_batch_holding_it_commits() -> None:
    notifier, live = unconnected()
    job_id, other = uuid.uuid4(), uuid.uuid4()

    def started(of: uuid.UUID) -> JobStarted:
        return JobStarted.new(
            StartedPayload(attempt=1, runner="function-runner"),
            producer="function-runner",
            workspace_id=uuid.uuid4(),
            job_id=of,
        )

    workspace, elsewhere = uuid.uuid4(), uuid.uuid4()
    live.shown(job_id, 7, workspace)
    live.shown(job_id, 5, workspace)  # an older one shown again (a second viewer's backlog)
    live.shown(other, 8, elsewhere)
    assert live.unconfirmed_in(workspace) == [(str(job_id), 7)]  # what a list of it waits for
    with notifier.watch(PROJECTED, str(job_id)) as caught_up:
        await waiting.committed(notifier, live, [delivered(started(job_id), 6)])
        assert live.unconfirmed(job_id) == 7 and not caught_up.is_set()
        await waiting.committed(notifier, live, [delivered(started(other), 9)])
        assert live.unconfirmed(job_id) == 7 and not caught_up.is_set()
        await waiting.committed(notifier, live, [delivered(started(job_id), 7)])
        assert live.unconfirmed(job_id) is None and caught_up.is_set()
    assert live.unconfirmed(other) is None and live.unconfirmed_in(elsewhere) == []
    never = uuid.uuid4()
    assert live.unconfirmed(never) is None  # never shown: its reads never wait


async def test_the_unconfirmed_jobs_remembered_are_bounded_and_the_oldest_go_first() -> None:
    _, live = unconnected()
    jobs_shown = [uuid.uuid4() for _ in range(live_module._UNCONFIRMED_LIMIT + 1)]
    workspace = uuid.uuid4()
    for seq, job_id in enumerate(jobs_shown, start=1):
        live.shown(job_id, seq, workspace)
    live.shown(jobs_shown[1], 10**9, workspace)  # shown again: now the newest
    live.shown(uuid.uuid4(), 10**9 + 1, workspace)
    assert live.unconfirmed(jobs_shown[0]) is None and live.unconfirmed(jobs_shown[2]) is None
    assert live.unconfirmed(jobs_shown[1]) == 10**9
    assert live.unconfirmed(jobs_shown[-1]) == len(jobs_shown)
