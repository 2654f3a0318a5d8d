"""Waiting for a job to end: ``wait=true``, a subagent's ``?wait=``, a cancel of a queued job,
and the end of an SSE stream.

The end is seen on this process's live subscription, usually before the read model has it;
the answer then waits (briefly) for the read model too, so a client that reads the job or its
events right after is never shown less than it was told. The read model's notification also
covers an end that went by before the wait began.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

from puras_common.api import ApiError, ErrorCode, JobOut, JobStatus
from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import JobCancelled, JobFailed, JobStarted, JobSucceeded
from puras_common.events.jobs import TERMINAL_TYPES
from puras_common.waits import woken

from puras_gateway import outputs
from puras_gateway.context import Gateway
from puras_gateway.jobview import load_job, with_waiting
from puras_gateway.live import LiveJobs
from puras_gateway.notify import JOBS_CHANNEL, PROJECTED, Notifier


async def wait_for_terminal(
    gw: Gateway, job_id: UUID, workspace_id: UUID, *, timeout: float
) -> JobOut:
    """The job once terminal, or as it stands when ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with (
        gw.live.watch(str(job_id)) as viewer,
        gw.notifier.watch(JOBS_CHANNEL, str(job_id)) as projected,
    ):
        # Why a queued job waits is asked only if the wait ends with the job still queued.
        job = await load_job(gw, job_id, workspace_id, explain=False)
        if job is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"job {job_id} not found")
        while not job.status.terminal and (remaining := deadline - loop.time()) > 0:
            event_arrived = asyncio.ensure_future(viewer.wait())
            row_changed = asyncio.ensure_future(projected.wait())
            done, _ = await asyncio.wait(
                {event_arrived, row_changed},
                timeout=min(remaining, 5.0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            event_arrived.cancel()
            row_changed.cancel()
            if event_arrived in done:
                for live in viewer.take():
                    event = live.event
                    if isinstance(event, JobStarted) and job.started_at is None:
                        job = job.model_copy(
                            update={"status": JobStatus.RUNNING, "started_at": event.occurred_at}
                        )
                    elif event.type in TERMINAL_TYPES:
                        # The live subscription usually sees the end before the projection has
                        # committed it: with no notification since the last read, reading again
                        # now would find the job as it was, so the read waits for one (or for
                        # the recheck, should a notification have been lost).
                        if not projected.is_set():
                            await woken(projected, min(1.0, max(0.0, deadline - loop.time())))
                        projected_job = await gw.notifier.wait_until(
                            JOBS_CHANNEL,
                            str(job_id),
                            lambda: _ended_in_read_model(gw, job_id, workspace_id),
                            timeout=max(0.0, deadline - loop.time()),
                        )
                        return projected_job or await terminal_from_event(gw, job, event) or job
                continue
            projected.clear()
            job = await load_job(gw, job_id, workspace_id, explain=False) or job
        return (await with_waiting(gw, [job], workspace_id))[0]


async def committed(notifier: Notifier, live: LiveJobs, deliveries: Sequence[Delivery]) -> None:
    """Once a batch has committed, wake this process's waiters on the jobs it ended at once,
    rather than when the database's notification of the same commit comes back; and tell the
    live fan-out, and the reads waiting on it, what the read model now holds."""
    for d in deliveries:
        job_id = d.event.job_id
        if job_id is None:
            continue
        if d.event.type in TERMINAL_TYPES:
            notifier.wake(JOBS_CHANNEL, str(job_id))
        if d.stream_seq is not None and live.projected(job_id, d.stream_seq):
            notifier.wake(PROJECTED, str(job_id))


async def _ended_in_read_model(gw: Gateway, job_id: UUID, workspace_id: UUID) -> JobOut | None:
    """The job as the read model has it, once that shows its end (its events are in by then)."""
    job = await load_job(gw, job_id, workspace_id)
    return job if job is not None and job.status.terminal else None


async def terminal_from_event(gw: Gateway, job: JobOut, event: Event) -> JobOut | None:
    """``job`` as its terminal event leaves it, or None if the event is not terminal."""
    if isinstance(event, JobSucceeded):
        succeeded = event.payload
        result = (
            await gw.payloads.get(succeeded.result_ref)
            if succeeded.result_ref
            else succeeded.result
        )
        ended = job.model_copy(
            update={"status": JobStatus.SUCCEEDED, "result": result, "attempt": succeeded.attempt}
        )
        assert event.workspace_id is not None
        ended = await outputs.with_outputs(gw, ended, event.workspace_id)
    elif isinstance(event, JobFailed):
        failed = event.payload
        ended = job.model_copy(
            update={
                "status": JobStatus.FAILED,
                "error": failed.error,
                "error_detail": failed.error_detail,
                "attempt": failed.attempt or job.attempt,
            }
        )
    elif isinstance(event, JobCancelled):
        ended = job.model_copy(
            update={"status": JobStatus.CANCELLED, "error": event.payload.reason}
        )
    else:
        return None
    return ended.model_copy(update={"finished_at": event.occurred_at})
