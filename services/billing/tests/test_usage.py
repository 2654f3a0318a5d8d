"""Charging usage: priced with the registry, one usage row and one ledger entry per usage event
however often it arrives, and the events read models need to show cost per job and per key."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from puras_billing.usage import UnattributedUsage, UsageCharges
from puras_common.bus import Delivery
from puras_common.events import BalanceChanged, LedgerPosted, UsageRecorded, UsageRecordedPayload
from puras_common.migrate import service_migrations
from puras_pricing import COMPUTE, ComputeRates, Pricebook, UnknownModel
from puras_testing import Infra, Scratch, scratch_schema


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    import puras_billing

    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("billing", puras_billing.__file__)
    ) as s:
        yield s


def usage(
    workspace: uuid.UUID | None, model: str = "bytedance/seedance-2-t2v", **fields
) -> UsageRecorded:
    payload = UsageRecordedPayload(
        **{
            "kind": "media",
            "provider": "fal",
            "model": model,
            "inputs": {"duration": "5"},
            **fields,
        }
    )
    return UsageRecorded.new(
        payload, producer="test", workspace_id=workspace, job_id=fields.get("job_id")
    )


async def deliver(db: Scratch, event: UsageRecorded, charges: UsageCharges | None = None) -> list:
    return await deliver_batch(db, [event], charges)


async def deliver_batch(
    db: Scratch, events: list[UsageRecorded], charges: UsageCharges | None = None
) -> list:
    """Apply ``events`` as one batch, as billing's consumer does; the events emitted."""
    charges = charges or UsageCharges(Pricebook())
    batch = [Delivery(e, i + 1, 1, e.subject, None) for i, e in enumerate(events)]  # type: ignore[arg-type]
    async with db.outbox.transaction() as uow:
        await charges.apply_batch(uow, batch)
    return uow.events


async def test_a_usage_event_is_priced_recorded_and_charged_once(db: Scratch) -> None:
    ws, job, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    event = usage(ws, job_id=job, key_id=key, attempt=1, request_id="req-1")
    emitted = await deliver(db, event)
    assert [type(e) for e in emitted] == [LedgerPosted, BalanceChanged]
    posted = emitted[0].payload
    assert (posted.kind, posted.amount_micros, posted.balance_micros) == (
        "charge",
        -1_820_000,
        -1_820_000,
    )
    assert (posted.job_id, posted.key_id, posted.source_event_id) == (job, key, event.id)
    assert posted.usage.billed_micros == 1_820_000 and (posted.usage.units, posted.usage.unit) == (
        "5",
        "second",
    )
    assert posted.usage.recorded_at == event.occurred_at

    assert await deliver(db, event) == []  # redelivered: nothing charged, nothing emitted
    row = await db.pool.fetchrow("SELECT * FROM usage WHERE usage_id = $1", event.id)
    assert (row["job_id"], row["key_id"], row["model"], row["billed_micros"]) == (
        job,
        key,
        event.payload.model,
        1_820_000,
    )
    assert row["request_id"] == "req-1" and str(row["margin_pct"]) == "20"
    assert (
        await db.pool.fetchval("SELECT count(*) FROM ledger WHERE source_event_id = $1", event.id)
        == 1
    )


async def test_a_batch_charges_each_event_once_and_announces_every_balance_in_order(
    db: Scratch,
) -> None:
    """Five calls over two workspaces in one batch, one of them charged before and one sent
    twice: three new entries, each announced with the balance and version it left behind, and
    one balance change per workspace with the last of them."""
    a, b = uuid.uuid4(), uuid.uuid4()
    seen = usage(a)
    await deliver(db, seen)  # a: -1,820,000, version 1
    video = {"model": "bytedance/seedance-2-t2v", "inputs": {"duration": "10"}}
    batch = [usage(a), seen, usage(b, **video), usage(a, **video)]
    emitted = await deliver_batch(db, [*batch, batch[0]])

    posted = [e for e in emitted if isinstance(e, LedgerPosted)]
    assert [(e.workspace_id, e.payload.source_event_id) for e in posted] == [
        (a, batch[0].id),
        (b, batch[2].id),
        (a, batch[3].id),
    ]
    assert [
        (e.payload.amount_micros, e.payload.balance_micros, e.payload.version) for e in posted
    ] == [
        (-1_820_000, -3_640_000, 2),
        (-3_640_000, -3_640_000, 1),
        (-3_640_000, -7_280_000, 3),
    ]
    changed = {
        e.workspace_id: (e.payload.balance_micros, e.payload.version)
        for e in emitted
        if isinstance(e, BalanceChanged)
    }
    assert len(emitted) == len(posted) + 2
    assert changed == {a: (-7_280_000, 3), b: (-3_640_000, 1)}
    stored = await db.pool.fetch(
        "SELECT workspace_id, balance_micros, entries FROM balances WHERE workspace_id = ANY($1)",
        [a, b],
    )
    assert {r["workspace_id"]: (r["balance_micros"], r["entries"]) for r in stored} == changed
    assert (
        await db.pool.fetchval("SELECT count(*) FROM usage WHERE workspace_id = ANY($1)", [a, b])
        == 4
    )


async def test_llm_usage_is_priced_from_tokens(db: Scratch) -> None:
    ws = uuid.uuid4()
    emitted = await deliver(
        db,
        usage(
            ws,
            "claude/sonnet-4-7",
            kind="llm",
            provider="anthropic",
            inputs=None,
            input_tokens=12_000,
            output_tokens=3_000,
        ),
    )
    assert emitted[0].payload.usage.billed_micros == 12_000 * 36 // 10 + 3_000 * 18
    assert emitted[0].payload.usage.units == "15000"


async def test_the_margin_billing_runs_with_is_the_one_charged_and_recorded(db: Scratch) -> None:
    emitted = await deliver(db, usage(uuid.uuid4()), UsageCharges(Pricebook("25")))
    assert emitted[0].payload.amount_micros == -1_895_834
    usage_id = emitted[0].payload.source_event_id
    assert (
        str(await db.pool.fetchval("SELECT margin_pct FROM usage WHERE usage_id = $1", usage_id))
        == "25"
    )


async def test_compute_is_charged_at_the_rates_billing_runs_with(db: Scratch) -> None:
    """A job's compute: 2.5 CPU s and 10 wall s at 400 and 7 micros a second; no margin."""
    ws, job = uuid.uuid4(), uuid.uuid4()
    event = usage(
        ws,
        COMPUTE,
        kind="compute",
        provider="puras",
        inputs={"cpu_ms": 2500, "wall_ms": 10_000},
        job_id=job,
        attempt=1,
    )
    priced = UsageCharges(Pricebook("25", compute=ComputeRates(400, 7)))
    emitted = await deliver(db, event, priced)
    charged = emitted[0].payload
    assert charged.amount_micros == -(1000 + 70)
    assert (charged.usage.kind, charged.usage.units, charged.usage.unit) == (
        "compute",
        "2.5",
        "cpu_second",
    )
    assert (charged.usage.cpu_ms, charged.usage.wall_ms) == (2500, 10_000)
    row = await db.pool.fetchrow(
        "SELECT kind, billed_micros, inputs FROM usage WHERE job_id = $1", job
    )
    assert (row["kind"], row["billed_micros"]) == ("compute", 1070)


async def test_a_batch_that_charges_a_workspace_nothing_announces_no_balance(
    db: Scratch,
) -> None:
    """Compute at the default price of 0: the row and its ledger entry are kept (with the
    balance's version), but the balance did not move, so no ``balance.changed`` goes out for
    that workspace; one that was charged in the same batch still gets its own."""
    free, paid = uuid.uuid4(), uuid.uuid4()

    def compute(ws: uuid.UUID) -> UsageRecorded:
        inputs = {"cpu_ms": 12, "wall_ms": 30}
        return usage(ws, COMPUTE, kind="compute", provider="puras", inputs=inputs)

    emitted = await deliver_batch(db, [compute(free), compute(free), usage(paid), compute(paid)])
    posted = [e for e in emitted if isinstance(e, LedgerPosted)]
    assert [(e.workspace_id, e.payload.amount_micros, e.payload.version) for e in posted] == [
        (free, 0, 1),
        (free, 0, 2),
        (paid, -1_820_000, 1),
        (paid, 0, 2),
    ]
    changed = [
        (e.workspace_id, e.payload.version) for e in emitted if isinstance(e, BalanceChanged)
    ]
    assert changed == [(paid, 2)]
    stored = await db.pool.fetchval(
        "SELECT entries FROM balances WHERE workspace_id = $1 AND balance_micros = 0", free
    )
    assert stored == 2


async def test_an_unpriceable_event_writes_nothing(db: Scratch) -> None:
    ws = uuid.uuid4()
    with pytest.raises(UnknownModel, match="seedance-2-t2v"):
        await deliver(db, usage(ws, "bytedance/seedance-2-t2x"))
    with pytest.raises(UnattributedUsage):
        await deliver(db, usage(None))
    assert await db.pool.fetchval("SELECT count(*) FROM ledger WHERE workspace_id = $1", ws) == 0
    assert await db.pool.fetchval("SELECT count(*) FROM usage WHERE workspace_id = $1", ws) == 0


async def test_usage_rows_are_append_only(db: Scratch) -> None:
    await deliver(db, usage(uuid.uuid4()))
    for sql in ("UPDATE usage SET billed_micros = 0", "DELETE FROM usage", "TRUNCATE usage"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.pool.execute(sql)
