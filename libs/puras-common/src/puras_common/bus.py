"""The event bus on NATS JetStream: connecting, declaring consumers, and the two ways services
consume.

* :class:`ProjectionRunner` — for services with state. Pulls batches, and for each batch opens
  one transaction that records every event in the ``inbox`` (so a redelivery is skipped), applies
  the new ones and writes the resulting events to the outbox; then acks. A failing event is
  retried alone with backoff and, after ``max_deliver`` attempts, parked on the dead-letter
  stream with the reason, and counted.
* :class:`WorkRunner` — for runners. Pulls as many messages as it has free slots, runs each in
  its own task, and keeps the message's lease alive with ``in_progress`` heartbeats while it runs.

Stateless producers publish straight to JetStream with :func:`publish`, retrying until acked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from puras_common import subjects
from puras_common.envelope import Event, UnknownEventType, parse_event
from puras_common.errors import TRANSIENT_ERRORS, backoff
from puras_common.logging import get_logger
from puras_common.outbox import Outbox, UnitOfWork, publish_acks
from puras_common.streams import StreamSpec

log = get_logger("puras_common.bus")


async def connect_nats(url: str, *, name: str, connect_wait_seconds: float = 30.0) -> NATS:
    """Connect, waiting for the server to come up; reconnect forever afterwards."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", client=name, error=repr(exc))

    async def on_disconnect() -> None:
        log.warning("nats disconnected", client=name)

    async def on_reconnect() -> None:
        log.info("nats reconnected", client=name)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_wait_seconds
    attempt = 0
    while True:
        try:
            return await nats.connect(
                url,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                pending_size=64 * 1024 * 1024,
            )
        except (nats.errors.NoServersError, OSError) as exc:
            if loop.time() > deadline:
                raise
            log.info("waiting for nats", client=name, error=repr(exc))
            await asyncio.sleep(backoff(attempt, base=0.1, cap=1.0))
            attempt += 1


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer: ``<service>-<purpose>``, explicit acks."""

    stream: StreamSpec
    durable: str
    filter_subjects: tuple[str, ...]
    ack_wait_seconds: float = 30.0
    max_deliver: int = 8
    max_ack_pending: int = 20_000
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL

    def config(self) -> ConsumerConfig:
        many = len(self.filter_subjects) > 1
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            deliver_policy=self.deliver_policy,
            filter_subject=None if many else self.filter_subjects[0],
            filter_subjects=list(self.filter_subjects) if many else None,
            max_waiting=512,
        )


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create the durable consumer, or update it to this definition."""
    await js.add_consumer(spec.stream.name, spec.config())


async def reset_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Delete and recreate a consumer so it delivers its stream from the start (for rebuilds)."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_consumer(spec.stream.name, spec.durable)
    await ensure_consumer(js, spec)


@dataclass(frozen=True)
class Delivery:
    """One delivered event and where it sits in its stream."""

    event: Event
    stream_seq: int
    num_delivered: int
    subject: str
    msg: Msg


def _meta(msg: Msg) -> tuple[int, int]:
    md = msg.metadata
    return md.sequence.stream, md.num_delivered


async def dead_letter(js: JetStreamContext, msg: Msg, *, stream: str, consumer: str, reason: str) -> None:
    """Park ``msg`` on the dead-letter stream with why, then stop its redelivery."""
    stream_seq, delivered = _meta(msg)
    headers = dict(msg.headers or {})
    headers.update(
        {
            "Nats-Msg-Id": f"dlq-{stream}-{consumer}-{stream_seq}",
            "Puras-Dlq-Stream": stream,
            "Puras-Dlq-Consumer": consumer,
            "Puras-Dlq-Subject": msg.subject,
            "Puras-Dlq-Stream-Seq": str(stream_seq),
            "Puras-Dlq-Deliveries": str(delivered),
            "Puras-Dlq-Reason": reason[:2000],
        }
    )
    await js.publish(subjects.dlq(stream, consumer), msg.data, headers=headers)
    await msg.term()
    log.error("message dead-lettered", stream=stream, consumer=consumer, stream_seq=stream_seq, reason=reason[:500])



class ConsumerGone(RuntimeError):
    """The server dropped the consumer (deleted, or replaced during a rebuild)."""


class PullFeed:
    """A durable pull consumer as a continuous feed of messages.

    It keeps pull requests outstanding at the server for as many messages as the caller has
    room for (its *credit*), so a message is delivered the moment it is stored, and never more
    than the caller asked for. (``fetch()`` of nats-py holds a half-filled batch until its
    timeout, which is seconds of latency on a quiet stream.) Requests expire after
    ``expires`` seconds with a 408 that returns their unused credit; idle heartbeats show the
    requests are still alive, and their absence (a reconnect) resets the credit.
    """

    def __init__(self, nc: NATS, spec: ConsumerSpec, *, expires: float = 30.0, heartbeat: float = 5.0) -> None:
        self.nc = nc
        self.spec = spec
        self.expires = expires
        self.heartbeat = heartbeat
        self.credit = 0
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream.name}.{spec.durable}"
        self._inbox = ""
        self._sub: Any = None
        self._last_heard = 0.0
        self._gone: str | None = None

    async def open(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_message)
        self._last_heard = asyncio.get_running_loop().time()

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def request(self, n: int) -> None:
        """Ask the server for up to ``n`` more messages."""
        if n <= 0:
            return
        body = {
            "batch": n,
            "expires": int(self.expires * 1e9),
            "idle_heartbeat": int(self.heartbeat * 1e9),
        }
        self.credit += n
        await self.nc.publish(self._subject, orjson.dumps(body), reply=self._inbox)

    async def _on_message(self, msg: Msg) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        status = msg.headers.get(api.Header.STATUS) if msg.headers else None
        if not status:
            self.credit = max(0, self.credit - 1)
            self._queue.put_nowait(msg)
            return
        if status in ("404", "408", "409"):
            description = msg.headers.get(api.Header.DESCRIPTION, "") if msg.headers else ""
            pending = msg.headers.get("Nats-Pending-Messages") if msg.headers else None
            returned = int(pending) if pending and pending.isdigit() else self.credit
            self.credit = max(0, self.credit - returned)
            if status == "409" and "deleted" in description.lower():
                self._gone = description
                self._queue.put_nowait(msg)  # wake the taker so it sees the consumer is gone

    def _check_alive(self) -> None:
        if self._gone:
            raise ConsumerGone(f"consumer {self.spec.durable}: {self._gone}")
        silent = asyncio.get_running_loop().time() - self._last_heard
        if self.credit and silent > 3 * self.heartbeat:
            # No message, heartbeat or status for a while: the requests were lost (e.g. in a
            # reconnect). Start over.
            self.credit = 0

    async def take(self, limit: int, *, wait: float) -> list[Msg]:
        """Up to ``limit`` messages: waits up to ``wait`` seconds for the first, then takes what
        is already there without waiting."""
        self._check_alive()
        try:
            first = await asyncio.wait_for(self._queue.get(), wait)
        except TimeoutError:
            self._check_alive()
            return []
        msgs = [first]
        while len(msgs) < limit and not self._queue.empty():
            msgs.append(self._queue.get_nowait())
        self._check_alive()
        return [m for m in msgs if not (m.headers and m.headers.get(api.Header.STATUS))]


Apply = Callable[[UnitOfWork, Delivery], Awaitable[None]]
ApplyBatch = Callable[[UnitOfWork, Sequence[Delivery]], Awaitable[None]]


class ProjectionRunner:
    """Applies a stream's events to one service's state, exactly once per event id."""

    def __init__(
        self,
        *,
        js: JetStreamContext,
        outbox: Outbox,
        spec: ConsumerSpec,
        apply: Apply | None = None,
        apply_batch: ApplyBatch | None = None,
        batch: int = 256,
        after_commit: Callable[[Sequence[Delivery]], Awaitable[None]] | None = None,
        before_commit: Callable[[UnitOfWork, Sequence[Delivery]], Awaitable[None]] | None = None,
    ) -> None:
        self.js = js
        self.outbox = outbox
        self.spec = spec
        if (apply is None) == (apply_batch is None):
            raise ValueError("give apply (one event at a time) or apply_batch (a batch at a time)")
        self.apply = apply
        self.apply_batch = apply_batch
        """For projections whose events commute: the batch's new events in one call, so the
        handler can group its statements."""
        self.batch = batch
        self.after_commit = after_commit
        self.before_commit = before_commit
        """Runs in the batch's transaction after its events are applied (e.g. to act on them
        without a second commit)."""
        self.applied = 0
        self.skipped = 0
        self.dead_lettered = 0

    @property
    def consumer(self) -> str:
        return self.spec.durable

    async def run(self) -> None:
        """Consume until cancelled."""
        await ensure_consumer(self.js, self.spec)
        feed = PullFeed(self.js._nc, self.spec)
        await feed.open()
        try:
            while True:
                if feed.credit < self.batch // 2:
                    await feed.request(self.batch - feed.credit)
                msgs = await feed.take(self.batch, wait=1.0)
                if msgs:
                    await self.handle(msgs)
        finally:
            await feed.close()

    async def handle(self, msgs: Sequence[Msg]) -> None:
        """Apply one fetched batch."""
        deliveries: list[Delivery] = []
        for msg in msgs:
            try:
                event = parse_event(msg.data)
            except (UnknownEventType, ValidationError, ValueError) as exc:
                await dead_letter(self.js, msg, stream=self.spec.stream.name, consumer=self.consumer, reason=f"undecodable: {exc}")
                self.dead_lettered += 1
                continue
            seq, delivered = _meta(msg)
            deliveries.append(Delivery(event, seq, delivered, msg.subject, msg))
        if not deliveries:
            return
        try:
            await self._apply_batch(deliveries)
        except TRANSIENT_ERRORS as exc:
            log.warning("projection batch failed; will be redelivered", consumer=self.consumer, error=repr(exc))
            for d in deliveries:
                await d.msg.nak(delay=backoff(d.num_delivered))
            return
        except Exception:
            # One bad event must not hold back the rest: apply them one at a time.
            for d in deliveries:
                await self._apply_one(d)
            return
        for d in deliveries:
            await d.msg.ack()
        if self.after_commit:
            await self.after_commit(deliveries)

    async def _apply_batch(self, deliveries: Sequence[Delivery]) -> None:
        async with self.outbox.transaction() as uow:
            fresh = await claim(uow.conn, self.consumer, deliveries)
            if self.apply_batch is not None:
                if fresh:
                    await self.apply_batch(uow, [d for d in deliveries if d.event.id in fresh])
            else:
                assert self.apply is not None
                for d in deliveries:
                    if d.event.id in fresh:
                        await self.apply(uow, d)
            if fresh and self.before_commit is not None:
                await self.before_commit(uow, deliveries)
        self.applied += len(fresh)
        self.skipped += len(deliveries) - len(fresh)

    async def _apply_one(self, d: Delivery) -> None:
        try:
            await self._apply_batch([d])
        except TRANSIENT_ERRORS as exc:
            log.warning("projection failed; will be redelivered", consumer=self.consumer, error=repr(exc))
            await d.msg.nak(delay=backoff(d.num_delivered))
            return
        except Exception as exc:
            if d.num_delivered >= self.spec.max_deliver:
                await dead_letter(
                    self.js, d.msg, stream=self.spec.stream.name, consumer=self.consumer,
                    reason=f"{type(exc).__name__}: {exc}",
                )
                self.dead_lettered += 1
            else:
                log.exception("projection failed", consumer=self.consumer, event_type=d.event.type, event_id=str(d.event.id))
                await d.msg.nak(delay=backoff(d.num_delivered, base=0.5, cap=30.0))
            return
        await d.msg.ack()
        if self.after_commit:
            await self.after_commit([d])


async def claim(conn: asyncpg.Connection, consumer: str, deliveries: Sequence[Delivery]) -> set[Any]:
    """Record deliveries in the inbox; returns the event ids seen here for the first time."""
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, event_id, stream_seq)
           SELECT $1, e.id, e.seq FROM unnest($2::uuid[], $3::bigint[]) AS e(id, seq)
           ON CONFLICT DO NOTHING
           RETURNING event_id""",
        consumer,
        [d.event.id for d in deliveries],
        [d.stream_seq for d in deliveries],
    )
    return {r["event_id"] for r in rows}


class Lease:
    """A runner's hold on one work message: heartbeats keep it, the outcome releases it."""

    def __init__(self, msg: Msg, *, ack_wait: float) -> None:
        self.msg = msg
        self.interval = max(0.5, ack_wait / 3)
        self.done = False
        self._beat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._beat = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await self.msg.in_progress()

    async def release(self) -> None:
        """Stop heartbeating; the message is left as it is (acked, naked or to expire)."""
        self.done = True
        if self._beat:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat

    async def ack(self) -> None:
        """The work is done (whatever its outcome for the job)."""
        if not self.done:
            await self.release()
            await self.msg.ack_sync()

    async def nak(self, delay: float | None = None) -> None:
        """Give the work back to be taken again after ``delay``."""
        if not self.done:
            await self.release()
            await self.msg.nak(delay=delay)

    async def term(self) -> None:
        """Never deliver this work again."""
        if not self.done:
            await self.release()
            await self.msg.term()


Work = Callable[[Delivery, Lease], Awaitable[None]]


class WorkRunner:
    """Takes work messages up to ``concurrency`` at a time, each under a lease."""

    def __init__(self, *, js: JetStreamContext, spec: ConsumerSpec, work: Work, concurrency: int) -> None:
        self.js = js
        self.spec = spec
        self.work = work
        self.concurrency = concurrency
        self.active: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()

    async def run(self) -> None:
        """Consume until cancelled; cancelling also cancels the work in flight."""
        await ensure_consumer(self.js, self.spec)
        feed = PullFeed(self.js._nc, self.spec)
        await feed.open()
        try:
            while True:
                # Never hold more work (running or requested) than there are slots.
                await feed.request(self.concurrency - len(self.active) - feed.credit)
                if len(self.active) >= self.concurrency:
                    self._freed.clear()
                    await self._freed.wait()
                    continue
                for msg in await feed.take(self.concurrency - len(self.active), wait=1.0):
                    task = asyncio.create_task(self._one(msg))
                    self.active.add(task)
                    task.add_done_callback(self._done)
        finally:
            await feed.close()
            for task in list(self.active):
                task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self.active.discard(task)
        self._freed.set()

    async def _one(self, msg: Msg) -> None:
        try:
            event = parse_event(msg.data)
        except (UnknownEventType, ValidationError, ValueError) as exc:
            await dead_letter(self.js, msg, stream=self.spec.stream.name, consumer=self.spec.durable, reason=f"undecodable: {exc}")
            return
        seq, delivered = _meta(msg)
        lease = Lease(msg, ack_wait=self.spec.ack_wait_seconds)
        lease.start()
        try:
            await self.work(Delivery(event, seq, delivered, msg.subject, msg), lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if delivered >= self.spec.max_deliver:
                await dead_letter(
                    self.js, msg, stream=self.spec.stream.name, consumer=self.spec.durable,
                    reason=f"{type(exc).__name__}: {exc}",
                )
            else:
                log.exception("work failed", consumer=self.spec.durable, event_id=str(event.id))
                await lease.nak(delay=backoff(delivered, base=1.0, cap=30.0))
        finally:
            await lease.release()


async def publish(js: JetStreamContext, events: Sequence[Event], *, timeout: float = 5.0, give_up_after: float | None = None) -> None:
    """Publish events in order, pipelined, retrying until every one is acknowledged.

    For stateless producers. ``Nats-Msg-Id`` = event id makes the retries safe.
    """
    loop = asyncio.get_running_loop()
    deadline = None if give_up_after is None else loop.time() + give_up_after
    attempt = 0
    start = 0
    while start < len(events):
        batch = events[start:]
        try:
            futures = [
                await js.publish_async(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.id)})
                for e in batch
            ]
        except TRANSIENT_ERRORS as exc:
            failed_at, error = 0, exc
        else:
            failed_at, error = await publish_acks(futures, timeout=timeout)
        if failed_at is None:
            return
        start += failed_at
        if deadline is not None and loop.time() > deadline:
            raise TimeoutError(f"could not publish {batch[failed_at].type}: {error!r}")
        delay = backoff(attempt, base=0.05, cap=2.0)
        log.warning("publish failed; retrying", subject=batch[failed_at].subject, error=repr(error), retry_in=delay)
        attempt += 1
        await asyncio.sleep(delay)


async def send(js: JetStreamContext, events: Sequence[Event], *, timeout: float = 5.0) -> Callable[[], Awaitable[None]]:
    """Write events to the server now, in order, without waiting for their acks; the returned
    coroutine function waits for them, publishing again whatever was not acknowledged.

    For a producer that may go on working while the server stores what it sent, and confirms
    before anything that must come after.
    """
    futures = [await js.publish_async(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.id)}) for e in events]

    async def confirmed() -> None:
        failed_at, _error = await publish_acks(futures, timeout=timeout)
        if failed_at is not None:
            await publish(js, events[failed_at:], timeout=timeout)

    return confirmed
