"""Budget holds: concurrent holds never add up to more than the balance or the key's daily cap,
charging a call's usage settles its hold, and a release or a lapse frees what was held."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from puras_billing import ledger
from puras_billing.holds import Holds
from puras_billing.usage import UsageCharges
from puras_common.budgets import HoldReply, HoldRequest, ReleaseRequest
from puras_common.bus import Delivery
from puras_common.events import CreditGranted, UsageRecorded, UsageRecordedPayload
from puras_common.events.platform import CreditGrantedPayload
from puras_common.migrate import service_migrations
from puras_pricing import Pricebook
from puras_testing import Infra, Scratch, scratch_schema


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    import puras_billing

    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("billing", puras_billing.__file__)
    ) as s:
        yield s


async def granted(db: Scratch, ws: uuid.UUID, micros: int) -> None:
    event = CreditGranted.new(
        CreditGrantedPayload(amount_micros=micros), producer="test", workspace_id=ws
    )
    async with db.outbox.transaction() as uow:
        await ledger.apply_grant(uow, Delivery(event, 1, 1, event.subject, None))  # type: ignore[arg-type]


def ask(ws: uuid.UUID, lo: int, hi: int, **fields: object) -> HoldRequest:
    return HoldRequest(
        hold_id=uuid.uuid4(),
        workspace_id=ws,
        min_micros=lo,
        max_micros=hi,
        ttl_seconds=60,
        **fields,
    )  # type: ignore[arg-type]


async def charge(
    db: Scratch, ws: uuid.UUID, *, hold_id: uuid.UUID, key_id: uuid.UUID | None
) -> int:
    """Charge a gemini/2.5-flash call of 1,000 in and 1,000 out tokens (450 micros)."""
    event = UsageRecorded.new(
        UsageRecordedPayload(
            kind="llm",
            provider="gemini",
            model="gemini/2.5-flash",
            input_tokens=1000,
            output_tokens=1000,
            key_id=key_id,
            hold_id=hold_id,
        ),
        producer="test",
        workspace_id=ws,
    )
    async with db.outbox.transaction() as uow:
        await UsageCharges(Pricebook()).apply_batch(
            uow, [Delivery(event, 1, 1, event.subject, None)]
        )  # type: ignore[arg-type]
    return 450


async def test_concurrent_holds_never_exceed_the_balance(db: Scratch) -> None:
    ws = uuid.uuid4()
    await granted(db, ws, 1_000)
    holds = Holds(db.pool)
    replies = await asyncio.gather(*(holds.hold(ask(ws, 300, 400)) for _ in range(12)))
    won = [r for r in replies if r.granted]
    # Decided one after another: two full grants, then the 200 left is below the minimum.
    assert [r.amount_micros for r in won] == [400, 400]
    refused = [r for r in replies if not r.granted]
    assert refused and {r.code for r in refused} == {"insufficient_credits"}
    assert "balance is 1000 micros" in refused[0].message


async def test_the_daily_cap_bounds_holds_and_charges_settle_them(db: Scratch) -> None:
    ws, key = uuid.uuid4(), uuid.uuid4()
    await granted(db, ws, 10**9)
    holds = Holds(db.pool)
    capped = {"key_id": key, "daily_cap_micros": 1_000}
    first = ask(ws, 450, 2_000, **capped)
    reply = await holds.hold(first)
    assert (reply.granted, reply.amount_micros) == (True, 1_000)  # cut to the whole cap
    second = await holds.hold(ask(ws, 450, 2_000, **capped))
    assert (second.granted, second.code) == (False, "spend_cap_reached")
    assert "daily cap of 1000 micros" in second.message
    # The call cost 450: its charge ends the hold, and 550 is left under the cap.
    await charge(db, ws, hold_id=first.hold_id, key_id=key)
    third = ask(ws, 450, 2_000, **capped)
    assert (await holds.hold(third)).amount_micros == 550
    await charge(db, ws, hold_id=third.hold_id, key_id=key)
    last = await holds.hold(ask(ws, 450, 2_000, **capped))
    assert (last.granted, last.code, last.spent_today_micros) == (False, "spend_cap_reached", 900)
    # Another key of the same workspace has its own cap.
    other = await holds.hold(ask(ws, 450, 2_000, key_id=uuid.uuid4(), daily_cap_micros=1_000))
    assert other.granted


async def test_a_hold_is_granted_once_and_freed_by_release_or_lapse(db: Scratch) -> None:
    ws = uuid.uuid4()
    await granted(db, ws, 1_000)
    holds = Holds(db.pool)
    request = ask(ws, 1_000, 1_000)
    assert (await holds.hold(request)).granted
    again: HoldReply = await holds.hold(request)  # an answer lost, the same hold asked again
    assert (again.granted, again.amount_micros) == (True, 1_000)
    assert not (await holds.hold(ask(ws, 1, 1))).granted
    await holds.release(ReleaseRequest(hold_id=request.hold_id))
    lapsing = ask(ws, 1_000, 1_000)
    assert (await holds.hold(lapsing)).granted
    await db.pool.execute(
        "UPDATE holds SET expires_at = now() - interval '1 second' WHERE hold_id = $1",
        lapsing.hold_id,
    )
    assert (await holds.hold(ask(ws, 1_000, 1_000))).granted


async def test_no_balance_row_is_no_credit(db: Scratch) -> None:
    reply = await Holds(db.pool).hold(ask(uuid.uuid4(), 0, 10))
    assert (reply.granted, reply.code) == (False, "insufficient_credits")
