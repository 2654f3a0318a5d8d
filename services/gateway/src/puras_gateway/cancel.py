"""Cancelling a job: a ``job.cancel_requested`` event. The scheduler cancels a queued job, or
one waiting for input, at once; a running job's runner stops it, so its end comes later."""

from __future__ import annotations

from puras_common.api import ApiError, ErrorCode, JobOut, JobStatus
from puras_common.events import JobCancelRequested
from puras_common.events.jobs import CancelRequestedPayload

from puras_gateway.context import Gateway
from puras_gateway.keys import Principal
from puras_gateway.waiting import wait_for_terminal

QUEUED_CANCEL_WAIT_SECONDS = 5.0
"""How long a cancel of a queued job waits to answer with the job cancelled."""


async def request_cancel(gw: Gateway, who: Principal, job: JobOut) -> JobOut:
    """Ask for ``job`` to be cancelled; 409 if it has already ended. The job as it stands after:
    cancelled when it was queued, still running when a runner holds it."""
    if job.status.terminal:
        raise ApiError(
            ErrorCode.CONFLICT,
            f"job {job.id} has already {job.status.value}; there is nothing to cancel",
        )
    request = JobCancelRequested.new(
        CancelRequestedPayload(key_id=who.key_id),
        producer="gateway",
        workspace_id=who.workspace_id,
        job_id=job.id,
    )
    async with gw.outbox.transaction() as uow:
        uow.emit(request)
    if job.status in (JobStatus.QUEUED, JobStatus.WAITING):
        # The scheduler cancels a queued or waiting job at once; answer with the cancelled job.
        job = await wait_for_terminal(
            gw, job.id, who.workspace_id, timeout=QUEUED_CANCEL_WAIT_SECONDS
        )
    return job
