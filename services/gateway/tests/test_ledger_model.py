"""The gateway's read model of the ledger: balances by version, each usage row counted once,
cost per job and per subagent tree, spend per key per UTC day, grants not yet posted, and the
rows of free compute, which come from the jobs' history instead."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import puras_gateway
import pytest_asyncio
from puras_common.db import fetch_one
from puras_common.events import JobStarted, JobSucceeded, JobUsageRecorded, LedgerPosted
from puras_common.events.jobs import StartedPayload, SucceededPayload
from puras_common.events.ledger import BilledUsage, LedgerPostedPayload
from puras_common.migrate import service_migrations
from puras_gateway import jobs, ledger
from puras_pricing import ComputeRates, Pricebook, compute_events
from puras_testing import Infra, Scratch, scratch_schema


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("gateway", puras_gateway.__file__)
    ) as s:
        yield s


def charge(
    ws: uuid.UUID,
    *,
    micros: int,
    version: int,
    balance: int,
    job: uuid.UUID | None = None,
    key: uuid.UUID | None = None,
    at: datetime | None = None,
) -> LedgerPosted:
    usage = BilledUsage(
        kind="llm",
        provider="anthropic",
        model="claude/haiku-4-5",
        input_tokens=10,
        output_tokens=5,
        units="15",
        unit="token",
        billed_micros=micros,
        recorded_at=at or datetime.now(UTC),
    )
    payload = LedgerPostedPayload(
        entry_id=uuid.uuid4(),
        kind="charge",
        amount_micros=-micros,
        balance_micros=balance,
        version=version,
        job_id=job,
        key_id=key,
        source_event_id=uuid.uuid4(),
        usage=usage,
    )
    return LedgerPosted.new(payload, producer="billing", workspace_id=ws, job_id=job)


def grant(
    ws: uuid.UUID, *, grant_id: uuid.UUID, micros: int, version: int, balance: int
) -> LedgerPosted:
    payload = LedgerPostedPayload(
        entry_id=uuid.uuid4(),
        kind="grant",
        amount_micros=micros,
        balance_micros=balance,
        version=version,
        source_event_id=grant_id,
    )
    return LedgerPosted.new(payload, producer="billing", workspace_id=ws)


async def fold(db: Scratch, *events: LedgerPosted) -> None:
    """The events as one batch of the consumer, repeats and all."""
    async with db.pool.acquire() as conn, conn.transaction():
        await ledger.fold(conn, events)


async def costs(db: Scratch, job_id: uuid.UUID) -> tuple[int, int]:
    """A job's own cost and its tree's, as a read of the job computes them."""
    row = await fetch_one(db.pool, f"SELECT {jobs.COSTS} FROM (SELECT $1::uuid AS id) j", job_id)
    return row["cost_micros"], row["total_cost_micros"]


async def test_the_newest_balance_wins_whatever_the_order(db: Scratch) -> None:
    ws = uuid.uuid4()
    first, second = (
        charge(ws, micros=5, version=1, balance=-5),
        charge(ws, micros=7, version=2, balance=-12),
    )
    await fold(db, second, first)
    assert await ledger.available_micros(db.pool, ws) == (-12, 0)


async def test_each_usage_row_counts_once_towards_job_and_key(db: Scratch) -> None:
    ws, job, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    a = charge(ws, micros=300, version=1, balance=-300, job=job, key=key)
    b = charge(ws, micros=45, version=2, balance=-345, job=job, key=key)
    await fold(db, a, b, a, b)  # redelivered without the inbox, as a rebuild would
    assert (await costs(db, job))[0] == 345
    assert await db.pool.fetchval("SELECT count(*) FROM usage_rows WHERE job_id = $1", job) == 2
    assert await ledger.spent_today(db.pool, key, datetime.now(UTC)) == 345


async def test_spend_is_counted_on_the_utc_day_of_the_call(db: Scratch) -> None:
    ws, key = uuid.uuid4(), uuid.uuid4()
    late = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    early = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)
    await fold(
        db,
        charge(ws, micros=10, version=1, balance=-10, key=key, at=late),
        charge(ws, micros=20, version=2, balance=-30, key=key, at=early),
    )
    assert await ledger.spent_today(db.pool, key, datetime(2026, 3, 1, 12, tzinfo=UTC)) == 10
    assert await ledger.spent_today(db.pool, key, datetime(2026, 3, 2, 12, tzinfo=UTC)) == 20


async def test_total_cost_adds_the_whole_subagent_tree(db: Scratch) -> None:
    ws = uuid.uuid4()
    root, child, grandchild, other = (uuid.uuid4() for _ in range(4))
    for job, parent in ((root, None), (child, root), (grandchild, child), (other, None)):
        await db.pool.execute(
            "INSERT INTO jobs (id, workspace_id, parent_job_id) VALUES ($1, $2, $3)",
            job,
            ws,
            parent,
        )
    await fold(
        db,
        charge(ws, micros=100, version=1, balance=-100, job=root),
        charge(ws, micros=20, version=2, balance=-120, job=child),
        charge(ws, micros=3, version=3, balance=-123, job=grandchild),
        charge(ws, micros=9999, version=4, balance=-10122, job=other),
    )
    assert await costs(db, root) == (100, 123)
    assert await costs(db, child) == (20, 23)
    assert await costs(db, uuid.uuid4()) == (0, 0)


async def test_a_grant_counts_until_billing_posts_it(db: Scratch) -> None:
    ws, grant_id = uuid.uuid4(), uuid.uuid4()
    await ledger.record_grant(db.pool, grant_id, ws, 5_000_000)  # type: ignore[arg-type]
    assert await ledger.available_micros(db.pool, ws) == (0, 5_000_000)
    await fold(db, grant(ws, grant_id=grant_id, micros=5_000_000, version=1, balance=5_000_000))
    assert await ledger.available_micros(db.pool, ws) == (5_000_000, 0)


def compute_usage(ws: uuid.UUID, job: uuid.UUID, key: uuid.UUID, *, free: bool) -> JobUsageRecorded:
    """An attempt's compute as its runner sends it to the job's history (``job.usage``)."""
    prices = Pricebook(compute=ComputeRates(0 if free else 400, 0))
    events = compute_events(
        prices,
        JobStarted.new(
            StartedPayload(attempt=1, runner="r"), producer="test", workspace_id=ws, job_id=job
        ),
        key_id=key,
        attempt=1,
        cpu_ms=40,
        wall_ms=90,
        producer="function-runner",
    )
    assert [e.type for e in events] == (["job.usage"] if free else ["usage.recorded", "job.usage"])
    (shown,) = (e for e in events if isinstance(e, JobUsageRecorded))
    return shown


async def test_free_compute_comes_from_the_jobs_history_and_a_charged_one_from_the_ledger(
    db: Scratch,
) -> None:
    """Compute at a price of 0 has no ledger entry: the job's ``job.usage`` brings its row,
    once however often it is folded. Priced compute's row is the ledger's, never this one."""
    ws, job, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    free, priced = compute_usage(ws, job, key, free=True), compute_usage(ws, job, key, free=False)
    for _ in range(2):  # a replay of JOBS changes nothing
        async with db.pool.acquire() as conn, conn.transaction():
            await jobs.fold(conn, [(free, 7), (priced, 8), (free, None)])
    rows = await db.pool.fetch("SELECT * FROM usage_rows WHERE job_id = $1", job)
    assert [
        (r["usage_id"], r["kind"], r["billed_micros"], r["cpu_ms"], r["wall_ms"], r["key_id"])
        for r in rows
    ] == [(free.payload.usage_id, "compute", 0, 40, 90, key)]
    assert await db.pool.fetchval("SELECT usage_rows FROM job_costs WHERE job_id = $1", job) == 1
    assert (await costs(db, job))[0] == 0
    # What clients see of it is the row, not how it was carried.
    shown = await db.pool.fetchval("SELECT payload FROM job_events WHERE seq = 7")
    assert "ledger" not in shown and "key_id" not in shown and shown["cpu_ms"] == 40


async def test_the_end_of_an_attempt_carries_its_free_compute_row(db: Scratch) -> None:
    """The event that ends an attempt carries its compute when that cost nothing: the row is
    folded from it once, however often, and also when the same usage arrives on its own (a
    refused outcome's). Clients see it on the end, without what is internal."""
    ws, job, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    usage = compute_usage(ws, job, key, free=True)
    end = JobSucceeded.new(
        SucceededPayload(attempt=1, result="ok", duration_ms=90, compute=usage.payload),
        producer="scheduler",
        workspace_id=ws,
        job_id=job,
    )
    for folded in ([(end, 11)], [(end, 11)], [(usage, 12)]):
        async with db.pool.acquire() as conn, conn.transaction():
            await jobs.fold(conn, folded)
    rows = await db.pool.fetch("SELECT * FROM usage_rows WHERE job_id = $1", job)
    assert [(r["usage_id"], r["attempt"], r["cpu_ms"], r["key_id"]) for r in rows] == [
        (usage.payload.usage_id, 1, 40, key)
    ]
    assert await db.pool.fetchval("SELECT usage_rows FROM job_costs WHERE job_id = $1", job) == 1
    shown = await db.pool.fetchval("SELECT payload FROM job_events WHERE seq = 11")
    assert shown["result"] == "ok" and shown["compute"]["cpu_ms"] == 40
    assert {"ledger", "key_id"}.isdisjoint(shown["compute"])
    # An end without compute shows none.
    bare = JobSucceeded.new(
        SucceededPayload(attempt=1, result="ok", duration_ms=90),
        producer="scheduler",
        workspace_id=ws,
        job_id=uuid.uuid4(),
    )
    assert "compute" not in jobs.public_payload(bare)
