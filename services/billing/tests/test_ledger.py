"""The ledger: one entry per source event however often it is delivered, balances that equal
the sum of entries, and a table the database itself keeps append-only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from puras_billing import ledger
from puras_common.bus import Delivery
from puras_common.events import BalanceChanged, CreditGranted, LedgerPosted
from puras_common.events.platform import CreditGrantedPayload
from puras_common.migrate import service_migrations
from puras_testing import Infra, Scratch, scratch_schema


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("billing", ledger.__file__)
    ) as s:
        yield s


def grant(workspace: uuid.UUID, micros: int) -> CreditGranted:
    return CreditGranted.new(
        CreditGrantedPayload(amount_micros=micros), producer="test", workspace_id=workspace
    )


async def deliver(db: Scratch, event: CreditGranted) -> list:
    async with db.outbox.transaction() as uow:
        await ledger.apply_grant(uow, Delivery(event, 1, 1, event.subject, None))  # type: ignore[arg-type]
    return uow.events


async def test_each_grant_is_posted_once_and_moves_the_balance(db: Scratch) -> None:
    ws = uuid.uuid4()
    first = grant(ws, 5_000_000)
    emitted = await deliver(db, first)
    assert [type(e) for e in emitted] == [LedgerPosted, BalanceChanged]
    assert emitted[1].payload.balance_micros == 5_000_000 and emitted[1].payload.version == 1
    assert await deliver(db, first) == []  # redelivered: nothing posted, nothing emitted
    emitted = await deliver(db, grant(ws, 250_000))
    assert emitted[1].payload.balance_micros == 5_250_000 and emitted[1].payload.version == 2
    total = await db.pool.fetchval(
        "SELECT sum(amount_micros) FROM ledger WHERE workspace_id = $1", ws
    )
    assert total == await db.pool.fetchval(
        "SELECT balance_micros FROM balances WHERE workspace_id = $1", ws
    )


async def test_the_ledger_refuses_update_delete_and_truncate(db: Scratch) -> None:
    await deliver(db, grant(uuid.uuid4(), 1))
    for sql in ("UPDATE ledger SET amount_micros = 0", "DELETE FROM ledger", "TRUNCATE ledger"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.pool.execute(sql)
