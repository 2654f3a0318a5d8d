"""A job's events as Server-Sent Events: the backlog after a resume point, live events as they
come, then ``event: end`` with the job as it ended. ``POST /v1/jobs?stream=true`` and
``GET /v1/jobs/{id}/stream`` answer with the same stream.

A live frame usually reaches its client without waking the stream at all: the gateway's one
subscription writes it to the connection itself (:class:`ConnectionSink`). One event for
10,000 viewers is then 10,000 socket writes, not 10,000 task switches through every
middleware's ``send``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final
from uuid import UUID

import orjson
from fastapi.responses import StreamingResponse
from puras_common.api import JobOut

from puras_gateway.context import Gateway
from puras_gateway.live import PING, Sink, sse_end
from puras_gateway.quotas import Slot
from puras_gateway.waiting import wait_for_terminal

SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

SERVER_SEND: Final = "puras.server_send"
"""The scope key under which :class:`ServerSend` keeps the server's own ``send``."""

_HTTPTOOLS_CYCLE: Final = "uvicorn.protocols.http.httptools_impl"


class ServerSend:
    """The outermost ASGI layer: keeps the server's ``send`` for the request in its scope, so a
    live stream can write to its connection past the middleware (which act on a response's
    start, and have nothing to do with the frames of its body)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[SERVER_SEND] = send
        await self.app(scope, receive, send)


class ConnectionSink:
    """A client's connection as uvicorn's httptools protocol holds it, written in the chunked
    framing that uvicorn itself uses for the body. It takes a frame only when uvicorn would
    write it at once: the response started chunked and is not complete, the client is still
    there, and the transport is not paused for a full buffer."""

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle

    @classmethod
    def of(cls, send: Any) -> ConnectionSink | None:
        """The sink behind the server's ``send``, or None where the server is another (tests
        calling the app in process, another protocol): the stream then sends every frame."""
        cycle = getattr(send, "__self__", None)
        if type(cycle).__module__ != _HTTPTOOLS_CYCLE:
            return None
        return cls(cycle)

    def write(self, frame: bytes) -> bool:
        cycle = self._cycle
        if (
            cycle.disconnected
            or cycle.response_complete
            or cycle.chunked_encoding is not True
            or cycle.flow.write_paused
            or cycle.transport.is_closing()
        ):
            return False
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(frame), frame))
        return True


class _EventStream(StreamingResponse):
    """A streaming response that finds its connection's sink when the server calls it."""

    def __init__(self, frames: AsyncIterator[bytes], holder: _SinkHolder, job_id: UUID) -> None:
        super().__init__(
            frames,
            media_type="text/event-stream",
            headers={**SSE_HEADERS, "X-Puras-Job-Id": str(job_id)},
        )
        self._holder = holder

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self._holder.sink = ConnectionSink.of(scope.get(SERVER_SEND))
        await super().__call__(scope, receive, send)


class _SinkHolder:
    sink: Sink | None = None


def event_stream(
    gw: Gateway,
    job_id: UUID,
    workspace_id: UUID,
    *,
    after: int,
    slot: Slot | None = None,
    ended: JobOut | None = None,
) -> StreamingResponse:
    """The SSE response for one job: backlog, live events, then ``event: end``. ``slot`` (the
    caller's place among its open streams) is released when the stream ends, however it ends.
    ``ended``: the job as just read, already ended, which ``event: end`` then shows without
    reading it again."""
    holder = _SinkHolder()
    frames = _frames(gw, job_id, workspace_id, after=after, slot=slot, holder=holder, ended=ended)
    return _EventStream(frames, holder, job_id)


async def _frames(
    gw: Gateway,
    job_id: UUID,
    workspace_id: UUID,
    *,
    after: int,
    slot: Slot | None,
    holder: _SinkHolder,
    ended: JobOut | None = None,
) -> AsyncIterator[bytes]:
    try:
        async for batch in gw.live.follow(
            str(job_id),
            after=after,
            heartbeat=gw.settings.sse_ping_seconds,
            sink=holder.sink,
            finished=ended is not None,
        ):
            # follow() yields public events only, each with its frame; one chunk for a batch.
            chunk = b"".join(event.frame for event in batch if event.frame) if batch else PING
            del batch  # not held while the stream waits for the next one
            yield chunk
        job = ended or await wait_for_terminal(gw, job_id, workspace_id, timeout=10.0)
        yield sse_end(
            orjson.dumps({"status": job.status, "job": job.model_dump(mode="json")}).decode()
        )
    finally:
        if slot is not None:
            slot.release()
