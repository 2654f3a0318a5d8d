"""Job events, live and from the start, as clients see them (``{id, type, payload}``, id = the
JOBS stream sequence).

One short-lived pull consumer per gateway process (named ``gateway-live-…``, created at start
and again from the last sequence seen if the server drops it) receives every new job event and
fans it out in memory to the viewers of that job, so 20k SSE streams cost one subscription. The
gateway names every consumer it makes: its NATS user may create consumers on JOBS only under a
name in the request subject, never one of the provisioned durables. A viewer
registers for live events *before* reading the job's backlog from the stream (batched direct
gets, no consumer: :mod:`puras_common.stored`), so nothing published in between is lost; events
seen twice are dropped by id.

A stream usually shows an event before the gateway's read model has taken it. So that a client
never reads less than it was shown (the console reads the job on ``input_requested`` to show the
question; an app answers it at once), the process keeps, per job, the newest event it showed a
client that its own projection has not yet confirmed; a read of that job waits for the read
model to hold it (:func:`puras_gateway.jobview.load_job`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from puras_common import stored, streams, subjects
from puras_common.api import PUBLIC_EVENT_TYPES, PUBLIC_TERMINAL_TYPES, PublicEvent
from puras_common.bus import ConsumerGone, ConsumerSpec, JetStream, PullFeed
from puras_common.envelope import Event, UnknownEventType, parse_event
from puras_common.logging import get_logger
from puras_common.observability import SSE_FRAMES, SSE_STREAMS, gauged

from puras_gateway.jobs import public_payload

log = get_logger("puras_gateway.live")

_QUEUE_LIMIT = 10_000
_UNCONFIRMED_LIMIT = 16_384
"""Jobs whose shown events the read model is remembered to lack (each for the few milliseconds
its projection lags, or until a read confirms an old one); the oldest are forgotten first."""

_DIRECT_FRAMES = SSE_FRAMES.labels("direct")
_QUEUED_FRAMES = SSE_FRAMES.labels("queued")
"""The counter's children, looked up once: the fan-out counts a frame per viewer."""

_TERMINAL_SUFFIXES = ("succeeded", "failed", "cancelled")
"""The subjects (``job.<id>.<suffix>``) of the events that end a job."""


@dataclass(frozen=True)
class LiveEvent:
    """A job event as every viewer of the job gets it: decoded and rendered once."""

    seq: int
    event: Event
    public: PublicEvent | None
    frame: bytes | None
    """The SSE frame, for public events."""
    ends_job: bool = False
    """Whether the event ends its job (worked out once, not per viewer)."""


def decode(seq: int, data: bytes) -> LiveEvent | None:
    try:
        event = parse_event(data)
    except (UnknownEventType, ValueError):
        return None
    public = public_event(seq, event)
    if public is None:
        return LiveEvent(seq, event, None, None)
    return LiveEvent(seq, event, public, sse_frame(public), public.type in PUBLIC_TERMINAL_TYPES)


def public_event(seq: int, event: Event) -> PublicEvent | None:
    """The public form of a stored job event, or None for internal ones."""
    public = PUBLIC_EVENT_TYPES.get(event.type)
    if public is None:
        return None
    return PublicEvent(
        id=seq, type=public, payload=public_payload(event), created_at=event.occurred_at
    )


class Sink(Protocol):
    """A client's connection that frames can be written to without waking its stream."""

    def write(self, frame: bytes) -> bool:
        """Write ``frame`` now, or return False if the connection cannot take it at once."""
        ...


@dataclass(eq=False)
class Viewer:
    """One reader of a job's live events: what arrived since it last took them, and the
    future it sleeps on meanwhile. An event costs the fan-out an append and, for a sleeping
    viewer, one wake-up; a wait costs one future and, with a timeout, one timer.

    A stream's viewer may also hold a :class:`Sink`: while its stream sleeps with nothing
    pending, the fan-out writes each frame straight to the client's connection, and the
    stream stays asleep. Anything else (an event that ends the job, a connection whose
    buffer is full, a stream busy sending) goes the stream's own way, so frames stay in order.
    """

    pending: list[LiveEvent] = field(default_factory=list)
    overflowed: bool = False
    """More than the limit arrived untaken (a stalled client): it re-reads from the stream."""
    sink: Sink | None = None
    sent: int = 0
    """The stream sequence of the last event read for this viewer (sent, for a stream)."""
    _waiter: asyncio.Future[None] | None = None

    def push(self, event: LiveEvent) -> bool:
        """Hand the viewer ``event``; False if it is too far behind to take more."""
        waiter = self._waiter
        asleep = waiter is not None and not waiter.done() and not self.pending
        if self.sink is not None and asleep:
            if event.seq <= self.sent or event.frame is None:
                return True  # read already, from the backlog; or not for clients
            if not event.ends_job and self.sink.write(event.frame):
                self.sent = event.seq
                _DIRECT_FRAMES.inc()
                return True
        if len(self.pending) >= _QUEUE_LIMIT:
            self.overflowed = True
        else:
            self.pending.append(event)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return not self.overflowed

    async def wait(self, timeout: float | None = None) -> None:
        """Until an event is pending (or the viewer overflowed), or ``timeout`` seconds pass."""
        if self.pending or self.overflowed:
            return
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def take(self) -> list[LiveEvent]:
        """The pending events, oldest first; the viewer has none left, and has not overflowed
        (one that had must read what it missed from the stream before it takes)."""
        events, self.pending, self.overflowed = self.pending, [], False
        return events


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _consumer_name(purpose: str) -> str:
    return f"gateway-{purpose}-{secrets.token_hex(8)}"


class LiveJobs:
    def __init__(self, js: JetStream) -> None:
        self.js = js
        self._viewers: dict[str, set[Viewer]] = defaultdict(set)
        self.delivered = 0
        self._last_seq: int | None = None
        self._feed: PullFeed | None = None
        self._unconfirmed: OrderedDict[str, tuple[int, UUID | None]] = OrderedDict()
        """Per job, the newest event shown to a client that this process has not seen its
        projection commit, and the job's workspace."""

    async def start(self) -> None:
        """Open the live consumer (new events from now on), on a server that can read a job's
        backlog."""
        stored.check_server(self.js.nc)
        self._feed = await self._open()

    async def _open(self) -> PullFeed:
        after = self._last_seq
        name = _consumer_name("live")
        config = ConsumerConfig(
            name=name,
            filter_subject=subjects.JOBS_ALL,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.NEW if after is None else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=None if after is None else after + 1,
            inactive_threshold=30.0,
            mem_storage=True,
            num_replicas=1,
        )
        await self.js.add_consumer("JOBS", config)
        feed = PullFeed(self.js.nc, ConsumerSpec(streams.JOBS, name, (subjects.JOBS_ALL,)))
        await feed.open()
        return feed

    async def run(self) -> None:
        """Fan every new job event out to its viewers, for the life of the gateway; reopen the
        consumer after the last event seen if the server loses it."""
        feed = self._feed or await self._open()
        idle = 0
        try:
            while True:
                if feed.credit < 256:
                    await feed.request(512 - feed.credit)
                try:
                    msgs = await feed.take(512, wait=1.0)
                except ConsumerGone:
                    msgs, idle = [], 1_000
                idle = 0 if msgs else idle + 1
                for msg in msgs:
                    self._last_seq = msg.metadata.sequence.stream
                    await self._on_event(msg)
                if idle >= 15 and not await self._exists(feed.spec.durable):
                    log.warning("live consumer lost; reopening", after=self._last_seq)
                    await feed.close()
                    feed = self._feed = await self._open()
                    idle = 0
                elif idle >= 15:
                    idle = 0
        finally:
            await feed.close()
            with contextlib.suppress(Exception):
                await self.js.delete_consumer("JOBS", feed.spec.durable)

    async def _exists(self, name: str) -> bool:
        try:
            await self.js.consumer_info("JOBS", name)
        except NotFoundError:
            return False
        return True

    async def _on_event(self, msg: Msg) -> None:
        viewers = self._viewers.get(msg.subject.split(".", 2)[1])
        if not viewers:
            return
        live = decode(msg.metadata.sequence.stream, msg.data)
        if live is None:
            return
        if live.public is not None and any(viewer.sink is not None for viewer in viewers):
            self.shown(live.event.job_id, live.seq, live.event.workspace_id)  # before a sink writes
        for viewer in viewers:
            self.delivered += viewer.push(live)

    def shown(self, job_id: object, seq: int, workspace_id: UUID | None) -> None:
        """A client is being shown the job's event ``seq``."""
        key = str(job_id)
        unconfirmed = self._unconfirmed
        if (before := unconfirmed.get(key)) is None or before[0] < seq:
            unconfirmed[key] = (seq, workspace_id)
            unconfirmed.move_to_end(key)
            if len(unconfirmed) > _UNCONFIRMED_LIMIT:
                unconfirmed.popitem(last=False)

    def projected(self, job_id: object, seq: int) -> bool:
        """The read model holds the job's events up to ``seq`` (committed, by whichever
        process); whether that confirms all the job's events shown so far."""
        if not self._unconfirmed:
            return False  # the usual case, on every event a projection commits
        key = str(job_id)
        if (shown := self._unconfirmed.get(key)) is not None and shown[0] <= seq:
            del self._unconfirmed[key]
            return True
        return False

    def unconfirmed(self, job_id: object) -> int | None:
        """The newest event of the job shown to a client that the read model may still lack."""
        if not self._unconfirmed or (shown := self._unconfirmed.get(str(job_id))) is None:
            return None
        return shown[0]

    def unconfirmed_in(self, workspace_id: UUID) -> list[tuple[str, int]]:
        """The jobs of the workspace, each with the newest of its events shown to a client that
        the read model may still lack (a list of its jobs must wait for them)."""
        if not self._unconfirmed:
            return []
        return [(job, seq) for job, (seq, of) in self._unconfirmed.items() if of == workspace_id]

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[Viewer]:
        viewer = Viewer()
        self._viewers[job_id].add(viewer)
        try:
            yield viewer
        finally:
            viewers = self._viewers.get(job_id)
            if viewers is not None:
                viewers.discard(viewer)
                if not viewers:
                    del self._viewers[job_id]

    @property
    def viewers(self) -> int:
        return sum(len(v) for v in self._viewers.values())

    async def backlog(self, job_id: str, *, after: int) -> list[tuple[int, bytes]]:
        """Every event of the job stored after sequence ``after``."""
        return await stored.stored_after(self.js.nc, "JOBS", subjects.job_all(job_id), after=after)

    async def ended_by(self, job_id: str, *, seq: int) -> bool:
        """Whether the job's stream holds an event that ended it at or before sequence ``seq``."""
        ends = [subjects.job(job_id, suffix) for suffix in _TERMINAL_SUFFIXES]
        return any(s <= seq for s in await stored.last_sequences(self.js.nc, "JOBS", ends))

    async def follow(
        self,
        job_id: str,
        *,
        after: int,
        heartbeat: float,
        sink: Sink | None = None,
        finished: bool = False,
    ) -> AsyncIterator[list[LiveEvent]]:
        """The job's public events after ``after``, in batches of what arrived together: the
        backlog, then live ones, ending after the terminal event, or at once when ``after`` is
        at or past it. Yields an empty batch every ``heartbeat`` seconds of silence. With a
        ``sink``, live events that arrive while the caller waits for the next batch may be
        written to it instead (:class:`Viewer`). ``finished``: the read model holds the job's end,
        so the backlog is all there is, even when the stream no longer keeps the job's events
        (older than its retention)."""
        with self.watch(job_id) as viewer, gauged(SSE_STREAMS):
            batch, viewer.sent, ended = await self._backlog_after(job_id, after)
            if batch:
                self.shown(job_id, batch[-1].seq, batch[-1].event.workspace_id)
                yield batch
            # The backlog was decoded for this viewer alone: not kept while the stream sleeps.
            batch = []
            # A viewer resuming at or after the end has seen it all: no live event will come.
            if finished or ended or (after and await self.ended_by(job_id, seq=viewer.sent)):
                return
            viewer.sink = sink
            while True:
                await viewer.wait(heartbeat)
                if viewer.overflowed:
                    viewer.take()
                    batch, viewer.sent, ended = await self._backlog_after(job_id, viewer.sent)
                elif pending := viewer.take():
                    batch, viewer.sent, ended = _public_after(
                        viewer.sent, [(e.seq, e) for e in pending]
                    )
                    _QUEUED_FRAMES.inc(len(batch))
                else:
                    yield []  # silence: time for a heartbeat
                    continue
                if batch:  # none when all that came was internal
                    self.shown(job_id, batch[-1].seq, batch[-1].event.workspace_id)
                    yield batch
                    batch = []
                if ended:
                    return

    async def _backlog_after(self, job_id: str, after: int) -> tuple[list[LiveEvent], int, bool]:
        """:func:`_public_after` of the job's events stored after ``after``."""
        messages = await self.backlog(job_id, after=after)
        return _public_after(after, _decoded(messages))


def _decoded(messages: list[tuple[int, bytes]]) -> list[tuple[int, LiveEvent | None]]:
    return [(seq, decode(seq, data)) for seq, data in messages]


def _public_after(
    last: int, events: list[tuple[int, LiveEvent | None]]
) -> tuple[list[LiveEvent], int, bool]:
    """The public events of ``events`` after sequence ``last``, up to and including a terminal
    one; the last sequence read; and whether the job ended."""
    batch: list[LiveEvent] = []
    for seq, event in events:
        if seq <= last:
            continue  # already sent, from the backlog
        last = seq
        if event is not None and event.public is not None:
            batch.append(event)
            if event.ends_job:
                return batch, last, True
    return batch, last, False


def sse_frame(event: PublicEvent) -> bytes:
    body = event.model_dump_json()
    return f"id: {event.id}\ndata: {body}\n\n".encode()


def sse_end(payload: str) -> bytes:
    return f"event: end\ndata: {payload}\n\n".encode()


PING = b": ping\n\n"
