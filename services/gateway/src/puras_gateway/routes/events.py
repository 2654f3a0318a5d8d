"""A job's events: paged (``/events``) or streamed (``/stream``, Server-Sent Events).

Both number events by their JOBS stream sequence, so they agree id for id, and a stream can be
resumed from any id with ``after_id`` or ``Last-Event-ID``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from puras_common.api import ApiError, ErrorCode, EventsPage, PublicEvent

from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.context import Gateway
from puras_gateway.live import PING, sse_end
from puras_gateway.routes.jobs import ERRORS, job_or_404, wait_for_terminal

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/{job_id}/events", response_model=EventsPage)
async def list_events(
    job_id: str,
    gw: GatewayDep,
    who: PrincipalDep,
    after_id: Annotated[int, Query(ge=0, description="Return events with a larger id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventsPage:
    job = await job_or_404(gw, who, job_id)
    rows = await gw.db.fetch(
        "SELECT seq, type, payload, created_at FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        job.id, after_id, limit,
    )
    events = [PublicEvent(id=r["seq"], type=r["type"], payload=r["payload"], created_at=r["created_at"]) for r in rows]
    next_after = events[-1].id if events else after_id
    return EventsPage(events=events, next_after_id=next_after, terminal=job.status.terminal and len(events) < limit)


def _resume_point(after_id: int | None, last_event_id: str | None) -> int:
    if after_id is not None:
        return after_id
    if last_event_id:
        if not last_event_id.strip().isdigit():
            raise ApiError(ErrorCode.INVALID_REQUEST, f"Last-Event-ID {last_event_id!r} is not an event id")
        return int(last_event_id)
    return 0


@router.get(
    "/{job_id}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def stream_events(
    job_id: str,
    gw: GatewayDep,
    who: PrincipalDep,
    after_id: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    job = await job_or_404(gw, who, job_id)
    after = _resume_point(after_id, last_event_id)
    return event_stream(gw, job.id, who.workspace_id, after=after)


def event_stream(gw: Gateway, job_id: UUID, workspace_id: UUID, *, after: int) -> StreamingResponse:
    """The SSE response for one job: backlog, live events, then ``event: end``."""
    return StreamingResponse(
        _frames(gw, job_id, workspace_id, after=after),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, "X-Puras-Job-Id": str(job_id)},
    )


async def _frames(gw: Gateway, job_id: UUID, workspace_id: UUID, *, after: int) -> AsyncIterator[bytes]:
    async for event in gw.live.follow(str(job_id), after=after, heartbeat=gw.settings.sse_ping_seconds):
        yield PING if event is None else event.frame
    job = await wait_for_terminal(gw, job_id, workspace_id, timeout=10.0)
    yield sse_end(orjson.dumps({"status": job.status, "job": job.model_dump(mode="json")}).decode())
