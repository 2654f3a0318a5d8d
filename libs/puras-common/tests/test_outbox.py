"""The outbox relay publishes every committed event once, in order, even across crashes; a
projection applies each event once however often it is delivered."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence

import asyncpg
import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from puras_common import observability, streams
from puras_common.bus import (
    ConsumerSpec,
    Delivery,
    ProjectionRunner,
    ensure_consumer,
    reset_consumer,
)
from puras_common.events import WorkspaceCreated
from puras_common.events.platform import WorkspaceCreatedPayload
from puras_common.outbox import Outbox, OutboxRelay, UnitOfWork
from puras_testing import Scratch, eventually
from puras_testing.links import cuttable_link, pool_through


def workspace_events(ws: uuid.UUID, n: int, start: int = 0) -> list[WorkspaceCreated]:
    return [
        WorkspaceCreated.new(
            WorkspaceCreatedPayload(slug=f"s{i}", name=f"n{i}"), producer="test", workspace_id=ws
        )
        for i in range(start, start + n)
    ]


async def stream_slugs(
    js: JetStreamContext, ws: uuid.UUID, expect: int, timeout: float = 10.0
) -> list[str]:
    """Every message for ``ws`` in PLATFORM, read with an ephemeral consumer."""
    sub = await js.pull_subscribe(
        f"workspace.{ws}.>", stream="PLATFORM", config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(seen) < expect and loop.time() < deadline:
        with contextlib.suppress(TimeoutError):
            for msg in await sub.fetch(100, timeout=0.5):
                seen.append(WorkspaceCreated.model_validate_json(msg.data).payload.slug)
    # Anything beyond `expect` would be a duplicate: give it a moment to show up.
    with contextlib.suppress(TimeoutError):
        for msg in await sub.fetch(100, timeout=0.3):
            seen.append(WorkspaceCreated.model_validate_json(msg.data).payload.slug)
    await sub.unsubscribe()
    return seen


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_relay_publishes_committed_events_in_order(
    scratch: Scratch, js: JetStreamContext
) -> None:
    ws = uuid.uuid4()
    events = workspace_events(ws, 60)

    async def write(chunk: list[WorkspaceCreated]) -> None:
        async with scratch.outbox.transaction() as uow:
            uow.emit(*chunk)

    async with running(OutboxRelay(scratch.outbox, js, dsn=scratch.dsn)):
        for i in range(0, 60, 6):
            await write(events[i : i + 6])
        seen = await stream_slugs(js, ws, 60)
    assert seen == [f"s{i}" for i in range(60)]


async def test_rolled_back_transaction_emits_nothing(
    scratch: Scratch, js: JetStreamContext
) -> None:
    ws = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with scratch.outbox.transaction() as uow:
            uow.emit(*workspace_events(ws, 1))
            raise RuntimeError("handler failed")
    async with scratch.outbox.transaction() as uow:
        uow.emit(*workspace_events(ws, 1, start=1))
    async with running(OutboxRelay(scratch.outbox, js, dsn=scratch.dsn)):
        assert await stream_slugs(js, ws, 1) == ["s1"]


async def test_outbox_refuses_update_and_delete(scratch: Scratch) -> None:
    async with scratch.outbox.transaction() as uow:
        uow.emit(*workspace_events(uuid.uuid4(), 1))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await scratch.pool.execute("UPDATE outbox SET subject = 'x'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await scratch.pool.execute("DELETE FROM outbox")


CRASH_AFTER_COMMIT = textwrap.dedent(
    """
    import asyncio, os, signal, sys, uuid
    from puras_common.db import create_pool
    from puras_common.bus import connect_nats
    from puras_common.outbox import Outbox, OutboxRelay
    from puras_common.events import WorkspaceCreated
    from puras_common.events.platform import WorkspaceCreatedPayload

    async def main(dsn, schema, nats_url, ws):
        pool = await create_pool(dsn, schema=schema, application_name="crasher", min_size=1, max_size=2)
        nc = await connect_nats(nats_url, name="crasher")
        outbox = Outbox(pool, schema=schema)
        relay = OutboxRelay(outbox, nc.jetstream(), dsn=dsn)
        task = asyncio.create_task(relay.run())
        await asyncio.wait_for(relay.leader.wait(), 10)
        task.cancel()  # the relay dies...
        await asyncio.gather(task, return_exceptions=True)
        async with outbox.transaction() as uow:  # ...the service commits an event...
            uow.emit(WorkspaceCreated.new(WorkspaceCreatedPayload(slug="crash", name="c"),
                                          producer="crasher", workspace_id=uuid.UUID(ws)))
        os.kill(os.getpid(), signal.SIGKILL)  # ...and the process dies before anything publishes it

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_event_committed_but_not_published_is_published_after_restart_exactly_once(
    scratch: Scratch, infra, js: JetStreamContext
) -> None:
    ws = uuid.uuid4()
    proc = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            CRASH_AFTER_COMMIT,
            scratch.dsn,
            scratch.schema,
            infra.nats_url(),
            str(ws),
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert await scratch.pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert await stream_slugs(js, ws, 1, timeout=1.0) == []  # committed, never published

    applied: list[str] = []

    async def apply(uow: UnitOfWork, d: Delivery) -> None:
        applied.append(d.event.payload.slug)  # type: ignore[attr-defined]
        await uow.conn.execute(
            "INSERT INTO counters VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET n = counters.n + 1",
            d.event.payload.slug,  # type: ignore[attr-defined]
        )

    spec = ConsumerSpec(streams.PLATFORM, f"test-{uuid.uuid4().hex[:8]}", (f"workspace.{ws}.>",))
    projection = ProjectionRunner(js=js, outbox=scratch.outbox, spec=spec, apply=apply)
    await ensure_consumer(js, spec)  # as provisioning does
    consume = asyncio.create_task(projection.run())
    try:
        # The restarted relay finds the row after the persisted cursor and publishes it.
        async with running(OutboxRelay(scratch.outbox, js, dsn=scratch.dsn)):
            await eventually(lambda: applied, what="the event downstream")
        # A relay restarted from an older cursor re-publishes: the server's duplicate window drops it.
        await scratch.pool.execute("DELETE FROM outbox_cursor")
        async with running(OutboxRelay(scratch.outbox, js, dsn=scratch.dsn)) as again:
            await eventually(lambda: again.published == 1, what="re-publish")
        assert await stream_slugs(js, ws, 1) == ["crash"]
        await asyncio.sleep(0.3)
        assert applied == ["crash"]
        assert await scratch.pool.fetchval("SELECT n FROM counters WHERE name = 'crash'") == 1
    finally:
        consume.cancel()


async def test_a_relay_under_a_trickle_writes_its_cursor_once_a_period_and_as_it_stops(
    scratch: Scratch, js: JetStreamContext
) -> None:
    """Every write of the cursor is a commit with its fsync: a relay that goes idle after each
    of a trickle of rows writes it at most once per ``persist_idle_seconds``, and as it stops."""
    ws = uuid.uuid4()
    events = workspace_events(ws, 4)

    async def cursor() -> int | None:
        return await scratch.pool.fetchval("SELECT seq FROM outbox_cursor")

    async with running(
        OutboxRelay(scratch.outbox, js, dsn=scratch.dsn, persist_idle_seconds=3600)
    ) as relay:
        async with scratch.outbox.transaction() as uow:
            uow.emit(events[0])
        await eventually(lambda: relay.published == 1, what="the first row")
        first = await eventually(cursor, what="the cursor written at the first idle")
        for n, event in enumerate(events[1:], start=2):
            async with scratch.outbox.transaction() as uow:
                uow.emit(event)
            await eventually(lambda n=n: relay.published == n, what=f"row {n}")  # type: ignore[misc]
        await asyncio.sleep(0.2)
        assert await cursor() == first
    assert await cursor() == first + 3
    assert await stream_slugs(js, ws, 4) == [f"s{i}" for i in range(4)]


async def test_a_relay_taking_the_lead_tells_republished_rows_from_duplicates(
    scratch: Scratch, js: JetStreamContext
) -> None:
    ws = uuid.uuid4()
    first, later, foreign = (
        workspace_events(ws, 5),
        workspace_events(ws, 2, start=5),
        workspace_events(ws, 1, start=7)[0],
    )
    async with scratch.outbox.transaction() as uow:
        uow.emit(*first)
    async with running(OutboxRelay(scratch.outbox, js, dsn=scratch.dsn)) as relay:
        await eventually(lambda: relay.published == 5, what="the first rows")
    # As if the relay had stopped with those rows in flight: its cursor is from before them.
    await scratch.pool.execute("DELETE FROM outbox_cursor")
    async with scratch.outbox.transaction() as uow:
        uow.emit(*later)
    async with running(OutboxRelay(scratch.outbox, js, dsn=scratch.dsn)) as again:
        await eventually(lambda: again.published == 7, what="the rows after the old cursor")
        assert (again.replayed, again.duplicates) == (5, 0)
        # Any other row the server already holds is a duplicate, not a replay.
        await js.publish(
            foreign.subject, foreign.to_json(), headers={"Nats-Msg-Id": str(foreign.id)}
        )
        async with scratch.outbox.transaction() as uow:
            uow.emit(foreign)
        await eventually(lambda: again.published == 8, what="the foreign row")
        assert (again.replayed, again.duplicates) == (5, 1)
    assert await stream_slugs(js, ws, 8) == [f"s{i}" for i in range(8)]


async def test_redelivered_event_changes_projection_once(
    scratch: Scratch, js: JetStreamContext
) -> None:
    ws = uuid.uuid4()
    event = workspace_events(ws, 1)[0]

    async def apply(uow: UnitOfWork, d: Delivery) -> None:
        await uow.conn.execute(
            "INSERT INTO counters VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET n = counters.n + 1",
            str(d.event.workspace_id),
        )

    spec = ConsumerSpec(streams.PLATFORM, f"test-{uuid.uuid4().hex[:8]}", (f"workspace.{ws}.>",))
    projection = ProjectionRunner(js=js, outbox=scratch.outbox, spec=spec, apply=apply)
    await ensure_consumer(js, spec)  # as provisioning does
    consume = asyncio.create_task(projection.run())
    count = "SELECT n FROM counters WHERE name = $1"
    try:
        await js.publish(event.subject, event.to_json(), headers={"Nats-Msg-Id": str(event.id)})
        await eventually(lambda: scratch.pool.fetchval(count, str(ws)), what="first application")
        # The same event again, past the server's duplicate window (a different msg id): the
        # stream now holds it twice, and the consumer sees both.
        await js.publish(
            event.subject, event.to_json(), headers={"Nats-Msg-Id": f"{event.id}-late"}
        )
        await eventually(lambda: projection.skipped >= 1, what="the duplicate to be skipped")
        # And a consumer reset replays the whole stream again.
        consume.cancel()
        await reset_consumer(js, spec)
        consume = asyncio.create_task(projection.run())
        await eventually(lambda: projection.skipped >= 3, what="the replay to be skipped")
        assert await scratch.pool.fetchval(count, str(ws)) == 1
        assert projection.applied == 1
    finally:
        consume.cancel()


async def test_a_batch_apply_keyed_by_event_id_keeps_no_inbox_and_applies_once(
    scratch: Scratch, js: JetStreamContext
) -> None:
    ws = uuid.uuid4()
    events = workspace_events(ws, 3)

    async def apply_batch(uow: UnitOfWork, batch: Sequence[Delivery]) -> int:
        rows = await uow.conn.fetch(
            """INSERT INTO counters SELECT unnest($1::text[]), 1
               ON CONFLICT (name) DO NOTHING RETURNING name""",
            [str(d.event.id) for d in batch],
        )
        return len(rows)

    spec = ConsumerSpec(streams.PLATFORM, f"test-{uuid.uuid4().hex[:8]}", (f"workspace.{ws}.>",))
    projection = ProjectionRunner(
        js=js, outbox=scratch.outbox, spec=spec, apply_batch=apply_batch, inbox=False
    )
    await ensure_consumer(js, spec)  # as provisioning does
    consume = asyncio.create_task(projection.run())
    try:
        for e in events:
            await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.id)})
        await eventually(lambda: projection.applied == 3, what="three applications")
        # Each again, past the server's duplicate window: the apply's own key skips them.
        for e in events:
            await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": f"{e.id}-late"})
        await eventually(lambda: projection.skipped == 3, what="the duplicates to be skipped")
        assert projection.applied == 3
        ids = [str(e.id) for e in events]
        assert (
            await scratch.pool.fetchval("SELECT sum(n) FROM counters WHERE name = ANY($1)", ids)
            == 3
        )
        assert (
            await scratch.pool.fetchval(
                "SELECT count(*) FROM inbox WHERE consumer = $1", spec.durable
            )
            == 0
        )
    finally:
        consume.cancel()


def test_only_a_batch_apply_can_go_without_the_inbox(
    scratch: Scratch, js: JetStreamContext
) -> None:
    async def apply(uow: UnitOfWork, d: Delivery) -> None:
        pass

    spec = ConsumerSpec(streams.PLATFORM, "unused", ("workspace.none.>",))
    with pytest.raises(ValueError, match="without the inbox"):
        ProjectionRunner(js=js, outbox=scratch.outbox, spec=spec, apply=apply, inbox=False)


async def test_poison_event_is_dead_lettered_and_the_rest_still_apply(
    scratch: Scratch, js: JetStreamContext
) -> None:
    ws = uuid.uuid4()
    good = workspace_events(ws, 2)

    async def apply(uow: UnitOfWork, d: Delivery) -> None:
        if d.event.payload.slug == "s0":  # type: ignore[attr-defined]
            raise ValueError("cannot apply s0")
        await uow.conn.execute("INSERT INTO counters VALUES ($1, 1)", d.event.payload.slug)  # type: ignore[attr-defined]

    durable = f"test-{uuid.uuid4().hex[:8]}"
    spec = ConsumerSpec(streams.PLATFORM, durable, (f"workspace.{ws}.>",), max_deliver=2)
    projection = ProjectionRunner(js=js, outbox=scratch.outbox, spec=spec, apply=apply)
    await ensure_consumer(js, spec)  # as provisioning does
    consume = asyncio.create_task(projection.run())
    try:
        await js.publish(f"workspace.{ws}.created", b"not json at all")
        for e in good:
            await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.id)})
        await eventually(
            lambda: scratch.pool.fetchval("SELECT n FROM counters WHERE name = 's1'"), what="s1"
        )
        await eventually(lambda: projection.dead_lettered == 2, timeout=20, what="two dead letters")
        dlq = await js.pull_subscribe(f"dlq.platform.{durable}", stream="DLQ")
        msgs = await dlq.fetch(2, timeout=5)
        reasons = sorted(m.headers["Puras-Dlq-Reason"] for m in msgs)
        assert reasons[0].startswith("ValueError: cannot apply s0")
        assert reasons[1].startswith("undecodable")
    finally:
        consume.cancel()


async def test_many_concurrent_transactions_committing_out_of_order_lose_nothing(
    scratch: Scratch, js: JetStreamContext
) -> None:
    # Transactions take their ids early and commit late, in any order (as a busy gateway's
    # submits do); every event still reaches the stream, once.
    ws = uuid.uuid4()
    n, writers = 3000, 64
    events = iter(workspace_events(ws, n))
    rng = __import__("random").Random(7)

    async def writer() -> None:
        for event in events:
            async with scratch.outbox.transaction() as uow:
                await uow.conn.execute("SELECT pg_current_xact_id()")
                await asyncio.sleep(rng.random() * 0.01)
                uow.emit(event)

    async with running(OutboxRelay(scratch.outbox, js, dsn=scratch.dsn)):
        await asyncio.gather(*(writer() for _ in range(writers)))
        seen = await stream_slugs(js, ws, n, timeout=60)
    assert len(seen) == len(set(seen)) and set(seen) == {f"s{i}" for i in range(n)}


async def _burn_xids_to_just_below_a_power_of_ten(conn: asyncpg.Connection) -> None:
    """Consume transaction ids until the next one is a little below 10**k (a subtransaction
    that writes takes one id, so one statement can burn thousands; the last few go singly)."""
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS burner (x int)")
    current = int(await conn.fetchval("SELECT pg_current_xact_id()::text"))
    boundary = 10 ** len(str(current))
    if boundary - current > 12:
        assert boundary - current < 2_000_000, (
            "this cluster's ids are too far from the next power of ten"
        )
        await conn.execute(
            f"""DO $$ BEGIN FOR i IN 1..{boundary - current - 12} LOOP
                    BEGIN INSERT INTO burner VALUES (1); EXCEPTION WHEN others THEN NULL; END;
                END LOOP; END $$"""
        )
    while int(await conn.fetchval("SELECT pg_current_xact_id()::text")) < boundary - 3:
        pass


async def test_the_cursor_survives_transaction_ids_gaining_a_digit(
    scratch: Scratch, js: JetStreamContext
) -> None:
    # Ids 99…9 and 100…0 must be ordered as numbers, not as text ("1000" < "999"): a relay
    # that published the newer row first would move its cursor past the older one for good.
    ws = uuid.uuid4()
    old, new1, held, new2 = workspace_events(ws, 4)
    admin = await asyncpg.connect(scratch.dsn)
    try:
        await _burn_xids_to_just_below_a_power_of_ten(admin)
    finally:
        await admin.close()
    async with scratch.outbox.transaction() as uow:  # an id just below the boundary
        uow.emit(old)
    async with scratch.pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS burner (x int)")
        for _ in range(5):  # step over the boundary
            await conn.execute("INSERT INTO burner VALUES (1)")
    async with scratch.outbox.transaction() as uow:
        uow.emit(new1)
    ids = await scratch.pool.fetch("SELECT tx_id::text AS t FROM outbox ORDER BY seq")
    assert len(ids[0]["t"]) < len(ids[1]["t"]), ids  # the two rows straddle 10**k
    # A transaction still open between two committed ones: rows after it are not final yet.
    blocker = await scratch.pool.acquire()
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT pg_current_xact_id()")
        async with scratch.outbox.transaction() as uow:
            uow.emit(new2)
        async with running(OutboxRelay(scratch.outbox, js, dsn=scratch.dsn)):
            await asyncio.sleep(0.5)  # the relay publishes what is final
            await scratch.outbox.write(blocker, [held])
            await tx.commit()
            scratch.outbox.committed.set()
            seen = await stream_slugs(js, ws, 4, timeout=10)
    finally:
        await scratch.pool.release(blocker)
    assert sorted(seen) == ["s0", "s1", "s2", "s3"]


async def test_rows_held_back_by_a_transaction_left_open_show_as_held_until_it_ends(
    scratch: Scratch, js: JetStreamContext
) -> None:
    ws = uuid.uuid4()
    (event,) = workspace_events(ws, 1)

    def held() -> float:
        value = observability.REGISTRY.get_sample_value(
            "puras_outbox_held_seconds", {"service": scratch.outbox.schema}
        )
        return value or 0.0

    blocker = await scratch.pool.acquire()
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT pg_current_xact_id()")  # left open, as by a stray session
        async with scratch.outbox.transaction() as uow:
            uow.emit(event)
        relay = OutboxRelay(scratch.outbox, js, dsn=scratch.dsn, held_warning_seconds=0.2)
        async with running(relay):
            await eventually(lambda: held() >= 0.3, what="the row shown as held")
            assert relay.published == 0
            await tx.rollback()
            await eventually(lambda: relay.published == 1, what="the row once the blocker ends")
            await eventually(lambda: held() == 0, what="no row held")
    finally:
        await scratch.pool.release(blocker)
    assert await stream_slugs(js, ws, 1) == ["s0"]


async def test_rows_held_back_by_an_open_transaction_are_read_again_only_once_it_ends(
    scratch: Scratch, js: JetStreamContext
) -> None:
    # Under load some writer is nearly always open somewhere in the database: a relay that read
    # its held-back rows again at every look would read each row hundreds of times.
    ws = uuid.uuid4()
    held, after = workspace_events(ws, 2)
    blocker = await scratch.pool.acquire()
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT pg_current_xact_id()")  # older than the next row's
        async with scratch.outbox.transaction() as uow:
            uow.emit(after)
        relay = OutboxRelay(scratch.outbox, js, dsn=scratch.dsn)
        async with running(relay):
            await eventually(lambda: relay.rows_read, what="the relay to read the row")
            await asyncio.sleep(0.3)  # the relay looks every 2 ms while a row is held back
            assert (relay.rows_read, relay.published) == (1, 0)
            await scratch.outbox.write(blocker, [held])
            await tx.commit()
            scratch.outbox.committed.set()
            seen = await stream_slugs(js, ws, 2)
    finally:
        await scratch.pool.release(blocker)
    assert seen == ["s0", "s1"]  # the older transaction's row first


_TORN = (
    "raise exceptions.InternalClientError("
    "'cannot switch to state 12; another operation (2) is in progress')"
)


async def test_a_relay_whose_connection_was_left_half_torn_down_reconnects_and_goes_on(
    scratch: Scratch, js: JetStreamContext
) -> None:
    """PostgreSQL killed under the relay can leave asyncpg's connection in a state where the
    next query fails with the driver's own error, not a connection error. The relay takes a
    new connection and publishes on; it used to stop its service."""
    ws = uuid.uuid4()

    class Torn(OutboxRelay):
        broke = False

        async def _drain_once(self, conn: asyncpg.Connection) -> str:
            if not self.broke:
                self.broke = True
                # Raised as the driver raises it, from its compiled protocol's frame.
                exec(compile(_TORN, "asyncpg/protocol/coreproto.pyx", "exec"), vars(asyncpg))
            return await super()._drain_once(conn)

    relay = Torn(scratch.outbox, js, dsn=scratch.dsn)
    async with running(relay):
        async with scratch.outbox.transaction() as uow:
            uow.emit(*workspace_events(ws, 3))
        seen = await stream_slugs(js, ws, 3)
    assert relay.broke and seen == ["s0", "s1", "s2"]


async def test_a_projection_waits_out_a_database_away_without_spending_its_deliveries(
    scratch: Scratch, js: JetStreamContext
) -> None:
    """Events that arrive while the projection's database is away are applied once it is back,
    each once, however long it was away. A delivery handed back counts towards max_deliver
    (here 2), past which JetStream never delivers the event again: handing the batch back on
    every failed try would lose the events of any outage longer than a few tries."""
    ws = uuid.uuid4()
    events = workspace_events(ws, 4)
    async with (
        cuttable_link(scratch.dsn) as link,
        pool_through(link, scratch.dsn, schema=scratch.schema) as pool,
    ):

        async def apply(uow: UnitOfWork, d: Delivery) -> None:
            await uow.conn.execute(
                "INSERT INTO counters VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET n = counters.n + 1",
                d.event.payload.slug,  # type: ignore[attr-defined]
            )

        spec = ConsumerSpec(
            streams.PLATFORM, f"test-{uuid.uuid4().hex[:8]}", (f"workspace.{ws}.>",), max_deliver=2
        )
        projection = ProjectionRunner(
            js=js, outbox=Outbox(pool, schema=scratch.schema), spec=spec, apply=apply
        )
        await ensure_consumer(js, spec)  # as provisioning does
        consume = asyncio.create_task(projection.run())
        applied = "SELECT count(*) FROM counters WHERE n = 1"
        try:
            await js.publish(events[0].subject, events[0].to_json())
            await eventually(lambda: scratch.pool.fetchval(applied), what="the first event")
            await link.cut()
            for e in events[1:]:
                await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.id)})
            # The outage: longer than two deliveries' backoff (0.3 s), as long as six tries here.
            await asyncio.sleep(4.0)
            assert await scratch.pool.fetchval(applied) == 1
            await link.restore()
            await eventually(
                lambda: _equals(scratch.pool.fetchval(applied), 4), what="every event applied"
            )
            assert await scratch.pool.fetchval("SELECT max(n) FROM counters") == 1
            assert projection.dead_lettered == 0 and projection.waiting_out >= 5
        finally:
            consume.cancel()


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_an_event_that_fails_like_a_database_away_while_it_answers_is_not_held_forever(
    scratch: Scratch, js: JetStreamContext
) -> None:
    """An event whose apply keeps failing as the driver fails when the server is gone, while
    the database answers a plain query, is the event's own fault: it is dead-lettered after its
    deliveries like any poison event, and the projection goes on with the rest rather than
    holding the batch for ever."""
    ws = uuid.uuid4()
    events = workspace_events(ws, 2)

    async def apply(uow: UnitOfWork, d: Delivery) -> None:
        if d.event.payload.slug == "s0":  # type: ignore[attr-defined]
            exec(compile(_TORN, "asyncpg/protocol/coreproto.pyx", "exec"), vars(asyncpg))
        await uow.conn.execute("INSERT INTO counters VALUES ($1, 1)", d.event.payload.slug)  # type: ignore[attr-defined]

    spec = ConsumerSpec(
        streams.PLATFORM, f"test-{uuid.uuid4().hex[:8]}", (f"workspace.{ws}.>",), max_deliver=2
    )
    projection = ProjectionRunner(js=js, outbox=scratch.outbox, spec=spec, apply=apply)
    await ensure_consumer(js, spec)  # as provisioning does
    consume = asyncio.create_task(projection.run())
    try:
        for e in events:
            await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.id)})
        await eventually(
            lambda: scratch.pool.fetchval("SELECT n FROM counters WHERE name = 's1'"), what="s1"
        )
        await eventually(lambda: projection.dead_lettered == 1, timeout=20, what="a dead letter")
        assert projection.waiting_out == 0
    finally:
        consume.cancel()
