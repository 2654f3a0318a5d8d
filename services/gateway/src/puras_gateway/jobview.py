"""One job as the API shows it: the read model's row, its result fetched from the payload store
when it was too large to keep inline, and signed links to the files it names."""

from __future__ import annotations

import asyncio
from uuid import UUID

from puras_common.api import ApiError, ErrorCode, JobOut, JobStatus
from puras_common.ids import parse_id
from puras_common.queue_state import ask_waiting

from puras_gateway import jobs, outputs
from puras_gateway.context import Gateway
from puras_gateway.keys import Principal
from puras_gateway.notify import PROJECTED

SHOWN_WAIT_SECONDS = 5.0
"""How long a read of a job waits for the read model to take an event a client was shown."""


async def load_job(
    gw: Gateway, job_id: UUID, workspace_id: UUID, *, explain: bool = True
) -> JobOut | None:
    """A job of ``workspace_id``, or None if the read model does not have it (yet). A queued
    job says why it waits when ``explain`` (a question to the scheduler). A job whose newest
    event this process streamed to a client before its projection committed it is read once
    the read model holds that event, so the reader sees at least what was shown."""
    shown = gw.live.unconfirmed(job_id)  # before the read, which a commit may then overtake
    row = await jobs.fetch_job(gw.db, job_id, workspace_id)
    if row is None:
        return None
    if shown is not None and await _read_model_holds(gw, job_id, shown):
        row = await jobs.fetch_job(gw.db, job_id, workspace_id) or row
    result = await gw.payloads.get(row["result_ref"]) if row["result_ref"] else None
    job = await outputs.with_outputs(gw, jobs.job_out(row, result=result), workspace_id)
    return (await with_waiting(gw, [job], workspace_id))[0] if explain else job


async def read_model_holds_shown(gw: Gateway, workspace_id: UUID) -> None:
    """Before a list of the workspace's jobs is read: wait until the read model holds every
    event this process streamed to a client of the workspace ahead of its projection, so the
    list shows each job at least as its stream did (a filter on status included)."""
    shown = gw.live.unconfirmed_in(workspace_id)
    if not shown:
        return
    # One read for all of them; only what it lacks is waited for, job by job.
    held = {
        r["seq"]
        for r in await gw.db.fetch(
            "SELECT seq FROM job_events WHERE seq = ANY($1::bigint[])", [seq for _, seq in shown]
        )
    }
    for job, seq in shown:
        if seq in held:
            gw.live.projected(job, seq)
    missing = [(job, seq) for job, seq in shown if seq not in held]
    if missing:
        await asyncio.gather(*(_read_model_holds(gw, job, seq) for job, seq in missing))


async def _read_model_holds(gw: Gateway, job_id: object, seq: int) -> bool:
    """Whether the read model holds the job's event ``seq``, which a client of this process was
    shown: waited for, up to :data:`SHOWN_WAIT_SECONDS`, since the projection usually commits it
    a few milliseconds after the stream showed it."""

    async def holds() -> bool | None:
        found = await gw.db.fetchval("SELECT true FROM job_events WHERE seq = $1", seq)
        return True if found else None

    held = await gw.notifier.wait_until(
        PROJECTED, str(job_id), holds, timeout=SHOWN_WAIT_SECONDS, recheck_seconds=0.05
    )
    if held:
        gw.live.projected(job_id, seq)  # committed by another process, or confirmed already
    return bool(held)


async def with_waiting(gw: Gateway, page: list[JobOut], workspace_id: UUID) -> list[JobOut]:
    """``page`` with ``waiting_reason`` and ``queue_position`` on its queued jobs, as the
    scheduler tells them (left empty if it does not answer at once)."""
    queued = [j.id for j in page if j.status is JobStatus.QUEUED]
    told = await ask_waiting(gw.runtime.nc, workspace_id, queued) if queued else {}
    return [
        j.model_copy(update={"waiting_reason": w.reason, "queue_position": w.queue_position})
        if (w := told.get(j.id)) is not None
        else j
        for j in page
    ]


async def job_or_404(gw: Gateway, who: Principal, job_id: str, *, explain: bool = True) -> JobOut:
    """The caller's job named by a path segment; 404 for a malformed id or another's job. A
    queued job says why it waits when ``explain``."""
    parsed = parse_id(job_id)
    job = await load_job(gw, parsed, who.workspace_id, explain=explain) if parsed else None
    if job is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"job {job_id} not found")
    return job
