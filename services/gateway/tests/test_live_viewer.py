"""A live viewer: what the gateway's one subscription hands each SSE stream and each wait."""

from __future__ import annotations

import asyncio
import uuid

from puras_common.events import JobLogged, JobSucceeded
from puras_common.events.jobs import LoggedPayload, SucceededPayload
from puras_gateway import live
from puras_gateway.live import LiveEvent, Viewer


def logged(seq: int) -> LiveEvent:
    event = JobLogged.new(
        LoggedPayload(attempt=1, stream="stdout", text=f"line {seq}"),
        producer="function-runner",
        job_id=uuid.uuid4(),
    )
    decoded = live.decode(seq, event.to_json())
    assert decoded is not None
    return decoded


async def test_a_sleeping_viewer_wakes_with_everything_pushed_in_order() -> None:
    viewer = Viewer()
    waiting = asyncio.create_task(viewer.wait(30))
    await asyncio.sleep(0)
    assert not waiting.done()
    for seq in (1, 2, 3):
        assert viewer.push(logged(seq))
    await asyncio.wait_for(waiting, 1)
    assert [e.seq for e in viewer.take()] == [1, 2, 3]
    assert viewer.take() == []


async def test_a_silent_wait_ends_at_its_timeout_with_nothing_pending() -> None:
    viewer = Viewer()
    await asyncio.wait_for(viewer.wait(0.05), 1)
    assert viewer.take() == []


async def test_a_cancelled_wait_leaves_the_viewer_usable() -> None:
    viewer = Viewer()
    waiting = asyncio.create_task(viewer.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert viewer.push(logged(7))
    await asyncio.wait_for(viewer.wait(), 1)
    assert [e.seq for e in viewer.take()] == [7]


async def test_a_viewer_too_far_behind_overflows_once_and_then_takes_again(monkeypatch) -> None:
    monkeypatch.setattr(live, "_QUEUE_LIMIT", 3)
    viewer = Viewer()
    assert all(viewer.push(logged(seq)) for seq in (1, 2, 3))
    assert not viewer.push(logged(4))  # dropped: the stream re-reads it from JetStream
    assert viewer.overflowed
    await asyncio.wait_for(viewer.wait(30), 1)  # an overflow wakes the viewer at once
    assert [e.seq for e in viewer.take()] == [1, 2, 3]
    assert not viewer.overflowed
    assert viewer.push(logged(5))
    assert [e.seq for e in viewer.take()] == [5]


class Connection:
    """A client connection that takes frames while ``open``."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.open = True

    def write(self, frame: bytes) -> bool:
        if self.open:
            self.frames.append(frame)
        return self.open


def ended(seq: int) -> LiveEvent:
    event = JobSucceeded.new(
        SucceededPayload(attempt=1, result={}, duration_ms=1),
        producer="scheduler",
        job_id=uuid.uuid4(),
    )
    decoded = live.decode(seq, event.to_json())
    assert decoded is not None and decoded.ends_job
    return decoded


async def asleep(viewer: Viewer) -> asyncio.Task[None]:
    task = asyncio.create_task(viewer.wait(30))
    await asyncio.sleep(0)
    return task


async def test_a_sleeping_stream_gets_its_frames_written_without_waking() -> None:
    connection = Connection()
    viewer = Viewer(sink=connection, sent=10)
    sleeping = await asleep(viewer)
    events = [logged(seq) for seq in (10, 11, 12)]
    assert all(viewer.push(event) for event in events)  # 10 was sent from the backlog
    assert connection.frames == [events[1].frame, events[2].frame]
    assert viewer.sent == 12 and viewer.pending == []
    await asyncio.sleep(0)
    assert not sleeping.done()
    sleeping.cancel()


async def test_the_end_and_a_full_connection_wake_the_stream_and_keep_their_order() -> None:
    connection = Connection()
    viewer = Viewer(sink=connection, sent=0)
    sleeping = await asleep(viewer)
    connection.open = False  # its buffer is full: the stream sends, and waits for the client
    assert viewer.push(logged(1))
    connection.open = True
    assert viewer.push(logged(2))  # behind a pending frame, so not written ahead of it
    await asyncio.wait_for(sleeping, 1)
    assert connection.frames == []
    assert [e.seq for e in viewer.take()] == [1, 2]

    sleeping = await asleep(viewer)
    assert viewer.push(ended(3))  # the stream itself sends the end, then closes
    await asyncio.wait_for(sleeping, 1)
    assert connection.frames == [] and [e.seq for e in viewer.take()] == [3]
