"""A job's events as Server-Sent Events: the backlog after a resume point, live events as they
come, then ``event: end`` with the job as it ended. ``POST /v1/jobs?stream=true`` and
``GET /v1/jobs/{id}/stream`` answer with the same stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final
from uuid import UUID

import orjson
from fastapi.responses import StreamingResponse

from puras_gateway.context import Gateway
from puras_gateway.live import PING, sse_end
from puras_gateway.quotas import Slot
from puras_gateway.waiting import wait_for_terminal

SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event_stream(
    gw: Gateway, job_id: UUID, workspace_id: UUID, *, after: int, slot: Slot | None = None
) -> StreamingResponse:
    """The SSE response for one job: backlog, live events, then ``event: end``. ``slot`` (the
    caller's place among its open streams) is released when the stream ends, however it ends."""
    return StreamingResponse(
        _frames(gw, job_id, workspace_id, after=after, slot=slot),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, "X-Puras-Job-Id": str(job_id)},
    )


async def _frames(
    gw: Gateway, job_id: UUID, workspace_id: UUID, *, after: int, slot: Slot | None
) -> AsyncIterator[bytes]:
    try:
        async for event in gw.live.follow(
            str(job_id), after=after, heartbeat=gw.settings.sse_ping_seconds
        ):
            if event is None:
                yield PING
            elif event.frame is not None:  # follow() yields public events only, each with a frame
                yield event.frame
        job = await wait_for_terminal(gw, job_id, workspace_id, timeout=10.0)
        yield sse_end(
            orjson.dumps({"status": job.status, "job": job.model_dump(mode="json")}).decode()
        )
    finally:
        if slot is not None:
            slot.release()
