"""A job's events: paged (``/events``) or streamed (``/stream``, Server-Sent Events).

Both number events by their JOBS stream sequence, so they agree id for id, and a stream can be
resumed from any id with ``after_id`` or ``Last-Event-ID``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from puras_common.api import MAX_EVENT_ID, ApiError, ErrorCode, EventsPage, PublicEvent

from puras_gateway import jobs
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.jobview import job_or_404
from puras_gateway.openapi import ERRORS
from puras_gateway.sse import event_stream

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)


@router.get("/{job_id}/events", response_model=EventsPage)
async def list_events(
    job_id: str,
    gw: GatewayDep,
    who: PrincipalDep,
    after_id: Annotated[
        int, Query(ge=0, le=MAX_EVENT_ID, description="Return events with a larger id")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventsPage:
    job = await job_or_404(gw, who, job_id)
    rows = await jobs.events_page(gw.db, job.id, after=after_id, limit=limit)
    events = [
        PublicEvent(id=r["seq"], type=r["type"], payload=r["payload"], created_at=r["created_at"])
        for r in rows
    ]
    next_after = events[-1].id if events else after_id
    return EventsPage(
        events=events,
        next_after_id=next_after,
        terminal=job.status.terminal and len(events) < limit,
    )


def _resume_point(after_id: int | None, last_event_id: str | None) -> int:
    if after_id is not None:
        return after_id
    if last_event_id:
        text = last_event_id.strip()
        # The length first: int() of thousands of digits is itself refused, with a ValueError.
        if not text.isdigit() or len(text) > len(str(MAX_EVENT_ID)) or int(text) > MAX_EVENT_ID:
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                f"Last-Event-ID {last_event_id[:40]!r} is not an event id "
                f"(a whole number from 0 to {MAX_EVENT_ID})",
                details=[{"pointer": "/header/Last-Event-ID", "message": "not an event id"}],
            )
        return int(text)
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
    after_id: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    job = await job_or_404(gw, who, job_id, explain=False)
    after = _resume_point(after_id, last_event_id)
    slot = gw.streams.acquire(who.key_id or who.user_id)
    ended = job if job.status.terminal else None
    return event_stream(gw, job.id, who.workspace_id, after=after, slot=slot, ended=ended)
