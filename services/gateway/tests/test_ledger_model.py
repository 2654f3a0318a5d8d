"""The gateway's read model of the ledger: balances by version, each usage row counted once,
cost per job and per subagent tree, spend per key per UTC day, and grants not yet posted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import puras_gateway
import pytest_asyncio
from puras_common.events import LedgerPosted
from puras_common.events.ledger import BilledUsage, LedgerPostedPayload
from puras_common.migrate import service_migrations
from puras_gateway import ledger
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
    assert await db.pool.fetchval("SELECT job_cost($1)", job) == 345
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
    costs = await db.pool.fetchrow("SELECT job_cost($1) AS own, job_total_cost($1) AS total", root)
    assert (costs["own"], costs["total"]) == (100, 123)
    assert await db.pool.fetchval("SELECT job_total_cost($1)", child) == 23
    assert await db.pool.fetchval("SELECT job_total_cost($1)", uuid.uuid4()) == 0


async def test_a_grant_counts_until_billing_posts_it(db: Scratch) -> None:
    ws, grant_id = uuid.uuid4(), uuid.uuid4()
    await ledger.record_grant(db.pool, grant_id, ws, 5_000_000)  # type: ignore[arg-type]
    assert await ledger.available_micros(db.pool, ws) == (0, 5_000_000)
    await fold(db, grant(ws, grant_id=grant_id, micros=5_000_000, version=1, balance=5_000_000))
    assert await ledger.available_micros(db.pool, ws) == (5_000_000, 0)
