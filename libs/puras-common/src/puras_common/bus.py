"""The event bus on NATS JetStream: connecting, declaring consumers, and the two ways services
consume.

* :class:`ProjectionRunner` — for services with state. Pulls batches, and for each batch opens
  one transaction that records every event in the ``inbox`` (so a redelivery is skipped), applies
  the new ones and writes the resulting events to the outbox; then acks. A batch apply keyed by
  the events' own ids (``inbox=False``) writes no inbox row: its key skips a redelivery. A
  failing event is retried alone with backoff and, after ``max_deliver`` attempts, parked on
  the dead-letter stream with the reason, and counted. A batch that fails because PostgreSQL is
  away is held and tried again until it is back: an outage spends none of its deliveries.
* :class:`WorkRunner` — for runners. Pulls as many messages as it has free slots, runs each in
  its own task, and keeps the message's lease alive with ``in_progress`` heartbeats while it runs.

Stateless producers publish straight to JetStream with :func:`publish`, retrying until acked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from puras_common import observability, subjects
from puras_common.envelope import Event, UnknownEventType, parse_event
from puras_common.errors import TRANSIENT_ERRORS, backoff, dependency_down
from puras_common.logging import get_logger
from puras_common.outbox import Outbox, UnitOfWork
from puras_common.publishing import Outgoing, publish_acknowledged, publish_acks
from puras_common.streams import StreamSpec
from puras_common.waits import next_item

log = get_logger("puras_common.bus")


class JetStream(JetStreamContext):
    """A JetStream context that keeps its core connection in view: the pull feeds of
    :class:`ProjectionRunner` and :class:`WorkRunner` speak core NATS (inboxes, pull requests),
    and nats-py keeps a context's connection private."""

    def __init__(self, nc: NATS, **options: Any) -> None:
        super().__init__(nc, **options)
        self.nc = nc


def jetstream(nc: NATS, **options: Any) -> JetStream:
    """The JetStream context of ``nc`` (``options`` as for ``nc.jetstream()``)."""
    return JetStream(nc, **options)


async def connect_nats(
    url: str, *, name: str, connect_wait_seconds: float = 30.0, inbox_prefix: str = "_INBOX"
) -> NATS:
    """Connect, waiting for the server to come up; reconnect forever afterwards. ``url`` may
    name several servers of a cluster, comma-separated (nats-py takes a string as one URL).
    Replies arrive under ``inbox_prefix`` (a service's own: only it may subscribe there)."""
    servers = [u.strip() for u in url.split(",") if u.strip()]

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
                servers,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                pending_size=64 * 1024 * 1024,
                inbox_prefix=inbox_prefix,
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
    """Create the durable consumer, or update it to this definition (and watch its lag). Only
    the provisioning step does this: services' NATS users may not manage consumers."""
    await js.add_consumer(spec.stream.name, spec.config())
    observability.WATCHED.add((spec.stream.name, spec.durable))


class ConsumerMissing(RuntimeError):
    """A service's durable consumer was never provisioned."""


async def bind_consumer(js: JetStreamContext, spec: ConsumerSpec) -> ConsumerSpec:
    """Check that the provisioned consumer exists; ``spec`` with the lease (ack wait, deliveries)
    the server holds for it, which is what the server enforces."""
    try:
        info = await js.consumer_info(spec.stream.name, spec.durable)
    except nats.js.errors.NotFoundError:
        raise ConsumerMissing(
            f"consumer {spec.durable} on stream {spec.stream.name} does not exist: the "
            "provisioning step creates it (puras up, puras admin provision; "
            "consumers listed in puras_common.consumers)"
        ) from None
    observability.WATCHED.add((spec.stream.name, spec.durable))
    config = info.config
    return replace(
        spec,
        ack_wait_seconds=config.ack_wait or spec.ack_wait_seconds,
        max_deliver=config.max_deliver or spec.max_deliver,
    )


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


async def dead_letter(
    js: JetStreamContext, msg: Msg, *, stream: str, consumer: str, reason: str
) -> None:
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
    observability.DEAD_LETTERS.labels(consumer).inc()
    log.error(
        "message dead-lettered",
        stream=stream,
        consumer=consumer,
        stream_seq=stream_seq,
        reason=reason[:500],
    )


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

    def __init__(
        self, nc: NATS, spec: ConsumerSpec, *, expires: float = 30.0, heartbeat: float = 5.0
    ) -> None:
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

    def take_nowait(self) -> list[Msg]:
        """Whatever was delivered and not yet taken."""
        msgs = []
        while not self._queue.empty():
            msg = self._queue.get_nowait()
            if not (msg.headers and msg.headers.get(api.Header.STATUS)):
                msgs.append(msg)
        return msgs

    async def take(self, limit: int, *, wait: float) -> list[Msg]:
        """Up to ``limit`` messages: waits up to ``wait`` seconds for the first, then takes what
        is already there without waiting."""
        self._check_alive()
        first = await next_item(self._queue, wait)
        if first is None:
            self._check_alive()
            return []
        msgs = [first]
        while len(msgs) < limit and not self._queue.empty():
            msgs.append(self._queue.get_nowait())
        self._check_alive()
        return [m for m in msgs if not (m.headers and m.headers.get(api.Header.STATUS))]


_TRIES_WHILE_UP = 3
"""Tries of a batch that fails as if the database were away while it answers a plain query."""

Apply = Callable[[UnitOfWork, Delivery], Awaitable[None]]
ApplyBatch = Callable[[UnitOfWork, Sequence[Delivery]], Awaitable[int | None]]
"""Applies a batch; with ``inbox=False`` it returns how many of its events were new."""


class ProjectionRunner:
    """Applies a stream's events to one service's state, exactly once per event id."""

    def __init__(
        self,
        *,
        js: JetStream,
        outbox: Outbox,
        spec: ConsumerSpec,
        apply: Apply | None = None,
        apply_batch: ApplyBatch | None = None,
        batch: int = 256,
        after_commit: Callable[[Sequence[Delivery]], Awaitable[None]] | None = None,
        before_commit: Callable[[UnitOfWork, Sequence[Delivery]], Awaitable[None]] | None = None,
        inbox: bool = True,
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
        if not inbox and apply_batch is None:
            raise ValueError("only a batch apply keyed by the events' ids can go without the inbox")
        self.inbox = inbox
        """False: ``apply_batch`` is itself exactly-once per event id (a unique key of its own
        on the id, every write conditional on it) and returns how many events were new; no
        inbox row is written, a round trip and an index entry per event saved."""
        self.after_commit = after_commit
        self.before_commit = before_commit
        """Runs in the batch's transaction after its events are applied (e.g. to act on them
        without a second commit)."""
        self.applied = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.waiting_out = 0
        """Times a batch was held because the database was away."""

    @property
    def consumer(self) -> str:
        return self.spec.durable

    async def run(self) -> None:
        """Consume until cancelled."""
        self.spec = await bind_consumer(self.js, self.spec)
        feed = PullFeed(self.js.nc, self.spec)
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
                await dead_letter(
                    self.js,
                    msg,
                    stream=self.spec.stream.name,
                    consumer=self.consumer,
                    reason=f"undecodable: {exc}",
                )
                self.dead_lettered += 1
                continue
            seq, delivered = _meta(msg)
            deliveries.append(Delivery(event, seq, delivered, msg.subject, msg))
        if not deliveries:
            return
        with self._spans(deliveries):
            await self._handle(deliveries)
        newest = max(d.event.occurred_at for d in deliveries)
        observability.PROJECTION_LAG_SECONDS.labels(self.consumer).set(
            max(0.0, (datetime.now(UTC) - newest).total_seconds())
        )

    @contextlib.contextmanager
    def _spans(self, deliveries: Sequence[Delivery]) -> Iterator[None]:
        """One span per job event of the batch, each the child of the span that published it."""
        if not observability.tracing():
            yield
            return
        with contextlib.ExitStack() as stack:
            for d in deliveries:
                if d.event.job_id is not None:
                    stack.enter_context(
                        observability.job_span(
                            f"{self.consumer} {d.event.type}",
                            d.event.job_id,
                            parent=(d.msg.headers or {}).get(observability.TRACEPARENT),
                            kind=SpanKind.CONSUMER,
                        )
                    )
            yield

    async def _handle(self, deliveries: list[Delivery]) -> None:
        try:
            await self._apply_waiting_out(deliveries)
        except Exception:
            # One bad event must not hold back the rest: apply them one at a time.
            for d in deliveries:
                await self._apply_one(d)
            return
        for d in deliveries:
            await d.msg.ack()
        if self.after_commit:
            await self.after_commit(deliveries)

    async def _apply_waiting_out(self, deliveries: Sequence[Delivery]) -> None:
        """Apply a batch, holding it while PostgreSQL is away rather than handing it back.

        A delivery handed back (a nak) counts towards ``max_deliver``, and JetStream never
        delivers an event again past it: an outage of a few seconds would leave events the
        projection never applies. So while the batch fails on a dependency that is away, and
        the database does not answer a plain query either, the batch is held (its messages
        kept in progress) and tried again. A failure that persists while the database answers
        is the batch's own, and raised after a few tries.
        """
        attempt = tries_while_up = 0
        while True:
            try:
                await self._apply_batch(deliveries)
                if attempt:
                    log.info("projection batch applied after the outage", consumer=self.consumer)
                return
            except Exception as exc:
                if not dependency_down(exc):
                    raise
                if await self._database_answers():
                    tries_while_up += 1
                    if tries_while_up >= _TRIES_WHILE_UP:
                        raise
                    continue
                self.waiting_out += 1
                delay = backoff(attempt, base=0.1, cap=2.0)
                if attempt % 10 == 0:
                    log.warning(
                        "projection waiting for the database",
                        consumer=self.consumer,
                        batch=len(deliveries),
                        error=repr(exc),
                    )
                for d in deliveries:
                    with contextlib.suppress(*TRANSIENT_ERRORS):
                        await d.msg.in_progress()
                await asyncio.sleep(delay)
                attempt += 1

    async def _database_answers(self) -> bool:
        try:
            await self.outbox.pool.fetchval("SELECT 1")
        except Exception as exc:
            if dependency_down(exc):
                return False
            raise
        return True

    async def _apply_batch(self, deliveries: Sequence[Delivery]) -> None:
        async with self.outbox.transaction() as uow:
            if self.inbox:
                ids = await claim(uow.conn, self.consumer, deliveries)
                fresh = [d for d in deliveries if d.event.id in ids]
                if fresh and self.apply_batch is not None:
                    await self.apply_batch(uow, fresh)
                elif fresh:
                    assert self.apply is not None
                    for d in fresh:
                        await self.apply(uow, d)
                new = len(ids)
            else:
                assert self.apply_batch is not None
                new = await self.apply_batch(uow, deliveries) or 0
            if new and self.before_commit is not None:
                await self.before_commit(uow, deliveries)
        self.applied += new
        self.skipped += len(deliveries) - new
        observability.EVENTS_APPLIED.labels(self.consumer).inc(new)

    async def _apply_one(self, d: Delivery) -> None:
        try:
            await self._apply_waiting_out([d])
        except Exception as exc:
            if d.num_delivered >= self.spec.max_deliver:
                await dead_letter(
                    self.js,
                    d.msg,
                    stream=self.spec.stream.name,
                    consumer=self.consumer,
                    reason=f"{type(exc).__name__}: {exc}",
                )
                self.dead_lettered += 1
            else:
                log.exception(
                    "projection failed",
                    consumer=self.consumer,
                    event_type=d.event.type,
                    event_id=str(d.event.id),
                )
                await d.msg.nak(delay=backoff(d.num_delivered, base=0.5, cap=30.0))
            return
        await d.msg.ack()
        if self.after_commit:
            await self.after_commit([d])


async def claim(
    conn: asyncpg.Connection, consumer: str, deliveries: Sequence[Delivery]
) -> set[Any]:
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


class Holdings:
    """The jobs this process's runners hold right now, by job id and delivery count.

    The scheduler asks about them (``svc.<runner>.holds``) before it treats a redelivered
    WORK message as a lost worker: after a NATS restart or a network blip, JetStream may
    redeliver work whose runner is alive and still running it, and that must not cost the job
    an attempt (or, for an agent, the job)."""

    def __init__(self) -> None:
        self._held: dict[str, set[int]] = {}

    def add(self, job_id: str, delivery: int) -> None:
        self._held.setdefault(job_id, set()).add(delivery)

    def discard(self, job_id: str, delivery: int) -> None:
        deliveries = self._held.get(job_id)
        if deliveries is not None:
            deliveries.discard(delivery)
            if not deliveries:
                del self._held[job_id]

    def holds_before(self, job_id: str, delivery: int) -> bool:
        """Whether an earlier delivery than ``delivery`` of the job's work is held here."""
        return any(d < delivery for d in self._held.get(job_id, ()))

    def __len__(self) -> int:
        return len(self._held)

    async def serve(self, nc: NATS, *, service: str, instance: str) -> Any:
        """Answer ``svc.<service>.holds`` ``{job_id, delivery}`` when an earlier delivery of
        that job is held here; stay silent otherwise (another replica may hold it)."""

        async def answer(msg: Msg) -> None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                asked = orjson.loads(msg.data)
                if msg.reply and self.holds_before(str(asked["job_id"]), int(asked["delivery"])):
                    await msg.respond(orjson.dumps({"held": True, "by": instance}))

        return await nc.subscribe(subjects.svc(service, "holds"), cb=answer)


class WorkRunner:
    """Takes work messages up to ``concurrency`` at a time, each under a lease.

    :meth:`drain` stops taking work, hands back what was delivered but not started, and waits
    for the work in flight to finish (a graceful stop: SIGTERM before an upgrade)."""

    def __init__(
        self,
        *,
        js: JetStream,
        spec: ConsumerSpec,
        work: Work,
        concurrency: int,
        holdings: Holdings | None = None,
    ) -> None:
        self.js = js
        self.spec = spec
        self.work = work
        self.concurrency = concurrency
        self.holdings = holdings if holdings is not None else Holdings()
        self.active: set[asyncio.Task[None]] = set()
        self.draining = False
        self._freed = asyncio.Event()
        self._feed: PullFeed | None = None

    async def run(self) -> None:
        """Consume until cancelled (which also cancels the work in flight) or drained."""
        self.spec = await bind_consumer(self.js, self.spec)
        feed = self._feed = PullFeed(self.js.nc, self.spec)
        await feed.open()
        try:
            while not self.draining:
                # Never hold more work (running or requested) than there are slots.
                await feed.request(self.concurrency - len(self.active) - feed.credit)
                if len(self.active) >= self.concurrency:
                    self._freed.clear()
                    await self._freed.wait()
                    continue
                for msg in await feed.take(self.concurrency - len(self.active), wait=1.0):
                    if self.draining:
                        await msg.nak()
                        continue
                    task = asyncio.create_task(self._one(msg))
                    self.active.add(task)
                    task.add_done_callback(self._done)
        except asyncio.CancelledError:
            for task in list(self.active):
                task.cancel()
            raise
        finally:
            await feed.close()

    async def drain(self) -> None:
        """Take no more work; give back what arrived unstarted; wait for the work in flight."""
        self.draining = True
        self._freed.set()
        if self._feed is not None:
            await self._feed.close()  # the server delivers nothing more to a pull without interest
            for msg in self._feed.take_nowait():
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    await msg.nak()
        if self.active:
            log.info("draining", consumer=self.spec.durable, in_flight=len(self.active))
            await asyncio.wait(set(self.active))

    def _done(self, task: asyncio.Task[None]) -> None:
        self.active.discard(task)
        self._freed.set()

    async def _one(self, msg: Msg) -> None:
        try:
            event = parse_event(msg.data)
        except (UnknownEventType, ValidationError, ValueError) as exc:
            await dead_letter(
                self.js,
                msg,
                stream=self.spec.stream.name,
                consumer=self.spec.durable,
                reason=f"undecodable: {exc}",
            )
            return
        seq, delivered = _meta(msg)
        lease = Lease(msg, ack_wait=self.spec.ack_wait_seconds)
        lease.start()
        job_id = str(event.job_id)
        self.holdings.add(job_id, delivered)
        in_flight = observability.WORK_IN_FLIGHT.labels(self.spec.durable)
        in_flight.inc()
        try:
            with (
                observability.timed(observability.WORK_SECONDS, consumer=self.spec.durable),
                observability.job_span(
                    f"work {msg.subject}",
                    event.job_id,
                    parent=(msg.headers or {}).get(observability.TRACEPARENT),
                    kind=SpanKind.CONSUMER,
                    attributes={"puras.delivery": delivered},
                ),
            ):
                await self.work(Delivery(event, seq, delivered, msg.subject, msg), lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if delivered >= self.spec.max_deliver:
                await dead_letter(
                    self.js,
                    msg,
                    stream=self.spec.stream.name,
                    consumer=self.spec.durable,
                    reason=f"{type(exc).__name__}: {exc}",
                )
            else:
                log.exception("work failed", consumer=self.spec.durable, event_id=str(event.id))
                await lease.nak(delay=backoff(delivered, base=1.0, cap=30.0))
        finally:
            in_flight.dec()
            self.holdings.discard(job_id, delivered)
            await lease.release()


async def publish(
    js: JetStreamContext,
    events: Sequence[Event],
    *,
    timeout: float = 5.0,
    give_up_after: float | None = None,
) -> None:
    """Publish events in order, pipelined, retrying until every one is acknowledged.

    For stateless producers. ``Nats-Msg-Id`` = event id makes the retries safe.
    """
    await publish_acknowledged(
        js, [Outgoing.of(e) for e in events], timeout=timeout, give_up_after=give_up_after
    )


async def send(
    js: JetStreamContext, events: Sequence[Event], *, timeout: float = 5.0
) -> Callable[[], Awaitable[None]]:
    """Write events to the server now, in order, without waiting for their acks; the returned
    coroutine function waits for them, publishing again whatever was not acknowledged.

    For a producer that may go on working while the server stores what it sent, and confirms
    before anything that must come after. Confirming again once confirmed does nothing.
    """
    futures = [
        await js.publish_async(
            e.subject, e.to_json(), headers=observability.publish_headers(e.id, e.job_id, e.subject)
        )
        for e in events
    ]
    stored = False

    async def confirmed() -> None:
        nonlocal stored
        if stored:
            return
        failed_at, _error = await publish_acks(futures, timeout=timeout)
        if failed_at is not None:
            await publish(js, events[failed_at:], timeout=timeout)
        stored = True

    return confirmed
