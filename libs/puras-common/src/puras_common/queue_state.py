"""Why queued jobs wait: the gateway asks the scheduler, which owns the queue
(``svc.scheduler.waiting``), when it shows a queued job."""

from __future__ import annotations

from typing import Final
from uuid import UUID

import nats.errors
from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from puras_common import subjects
from puras_common.events.jobs import WaitingReason

WAITING: Final = subjects.svc("scheduler", "waiting")
MAX_JOBS: Final = 200
"""Jobs one request may ask about (a page of a list)."""


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True)


class WaitingRequest(_Message):
    workspace_id: UUID
    job_ids: list[UUID] = Field(max_length=MAX_JOBS)


class Waiting(_Message):
    reason: WaitingReason
    queue_position: int | None = None


class WaitingReply(_Message):
    jobs: dict[UUID, Waiting]
    """Only the jobs of the workspace that still wait; the others are left out."""


async def ask_waiting(
    nc: NATS, workspace_id: UUID, job_ids: list[UUID], *, timeout: float = 0.5
) -> dict[UUID, Waiting]:
    """Why each of ``job_ids`` waits; empty when the scheduler does not answer in time (the
    job is then shown without a reason rather than late)."""
    if not job_ids:
        return {}
    request = WaitingRequest(workspace_id=workspace_id, job_ids=job_ids[:MAX_JOBS])
    try:
        msg = await nc.request(WAITING, request.model_dump_json().encode(), timeout=timeout)
        return WaitingReply.model_validate_json(msg.data).jobs
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError, ValidationError):
        return {}
