"""An SSE stream reads its job's backlog from JetStream for itself; once sent, the backlog is not
kept while the stream waits for live events (it was a quarter of a stream's memory at 2,000 streams)."""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref
from types import SimpleNamespace
from typing import Any

from puras_common.bus import JetStream, publish
from puras_common.events import JobLogged
from puras_common.events.jobs import LoggedPayload
from puras_gateway import live, sse


async def test_a_stream_waiting_for_live_events_holds_none_of_its_backlog(
    js: JetStream, monkeypatch: Any
) -> None:
    job_id = uuid.uuid4()
    await publish(
        js,
        [
            JobLogged.new(
                LoggedPayload(attempt=1, stream="stdout", text=f"line {n}"),
                producer="function-runner",
                job_id=job_id,
            )
            for n in range(3)
        ],
    )
    decoded: list[weakref.ref[live.LiveEvent]] = []
    original = live.decode

    def decode(seq: int, data: bytes) -> live.LiveEvent | None:
        event = original(seq, data)
        if event is not None:
            decoded.append(weakref.ref(event))
        return event

    monkeypatch.setattr(live, "decode", decode)
    gateway = SimpleNamespace(live=live.LiveJobs(js), settings=SimpleNamespace(sse_ping_seconds=60))
    frames = sse._frames(
        gateway,  # type: ignore[arg-type]
        job_id,
        uuid.uuid4(),
        after=0,
        slot=None,
        holder=sse._SinkHolder(),
    )
    first = await anext(frames)
    assert first.count(b"line ") == 3
    assert len(decoded) == 3

    waiting = asyncio.create_task(anext(frames))  # the stream now sleeps until a live event
    await asyncio.sleep(0.1)
    assert not waiting.done()
    gc.collect()
    assert [ref() for ref in decoded] == [None, None, None]

    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await frames.aclose()
