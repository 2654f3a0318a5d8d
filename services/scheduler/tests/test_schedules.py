"""Firing schedules on the scheduler's own tables: replicas racing over the same schedules fire
each fire time once, a decision made again (a lost cursor) fires nothing twice, only newer
revisions apply, and a paused schedule's fire times never come back when it resumes."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest_asyncio
from puras_common.bus import Delivery
from puras_common.events import ScheduleDeleted, ScheduleSet
from puras_common.events.schedules import ScheduleDeletedPayload, ScheduleSetPayload
from puras_common.migrate import service_migrations
from puras_scheduler import schedules
from puras_scheduler.schedules import Firing
from puras_testing import Infra, Scratch, scratch_schema

GRACE = timedelta(seconds=60)


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("scheduler", schedules.__file__)
    ) as s:
        yield s


async def now(db: Scratch) -> datetime:
    return await db.pool.fetchval("SELECT clock_timestamp()")


async def apply(db: Scratch, event: ScheduleSet | ScheduleDeleted) -> None:
    async with db.outbox.transaction() as uow:
        await schedules.apply(uow, Delivery(event, 1, 1, event.subject, None))  # type: ignore[arg-type]


def set_event(
    schedule_id: uuid.UUID,
    *,
    at: datetime,
    revision: int = 1,
    cron: str = "* * * * * *",
    paused: bool = False,
) -> ScheduleSet:
    return ScheduleSet.new(
        ScheduleSetPayload(
            schedule_id=schedule_id, cron=cron, timezone="UTC", paused=paused, revision=revision
        ),
        producer="test",
        workspace_id=uuid.uuid4(),
        occurred_at=at,
    )


async def fired(db: Scratch, schedule_id: uuid.UUID) -> list[datetime]:
    rows = await db.pool.fetch(
        """SELECT (body->'payload'->>'fire_at')::timestamptz AS fire_at FROM outbox
           WHERE type = 'schedule.fired' AND body->'payload'->>'schedule_id' = $1
           ORDER BY fire_at""",
        str(schedule_id),
    )
    return [r["fire_at"] for r in rows]


async def test_replicas_racing_fire_each_fire_time_once(db: Scratch) -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    start = await now(db) - timedelta(seconds=4)
    for schedule_id in ids:
        await apply(db, set_event(schedule_id, at=start))
    replicas = [Firing(db.outbox, grace=GRACE) for _ in range(3)]
    await asyncio.gather(*(replica.tick() for replica in replicas for _ in range(4)))
    for schedule_id in ids:
        times = await fired(db, schedule_id)
        assert len(times) == len(set(times)) >= 4
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(times))
    assert sum(replica.fired for replica in replicas) == sum([len(await fired(db, s)) for s in ids])


async def test_a_decision_made_again_fires_nothing_twice(db: Scratch) -> None:
    schedule_id = uuid.uuid4()
    start = await now(db) - timedelta(seconds=3)
    await apply(db, set_event(schedule_id, at=start))
    firing = Firing(db.outbox, grace=GRACE)
    await firing.tick()
    first = await fired(db, schedule_id)
    # As if the tick's cursor had been lost: the same fire times are decided again.
    await db.pool.execute(
        "UPDATE schedules SET cursor_at = $2, next_fire_at = $2 WHERE id = $1", schedule_id, start
    )
    await firing.tick()
    again = await fired(db, schedule_id)
    assert again[: len(first)] == first and len(again) == len(set(again))


async def test_only_newer_revisions_apply_and_a_pause_never_comes_back(db: Scratch) -> None:
    schedule_id = uuid.uuid4()
    start = await now(db) - timedelta(seconds=30)
    await apply(db, set_event(schedule_id, at=start, cron="0 0 1 1 *"))
    await apply(db, set_event(schedule_id, at=start, revision=3, cron="0 0 1 1 *", paused=True))
    await apply(db, set_event(schedule_id, at=start, revision=2, cron="* * * * * *"))
    row = await db.pool.fetchrow("SELECT * FROM schedules WHERE id = $1", schedule_id)
    assert (row["revision"], row["cron"], row["paused"], row["next_fire_at"]) == (
        3,
        "0 0 1 1 *",
        True,
        None,
    )
    # Resumed every second, 30 s after it was created: the paused seconds are not fired.
    resumed = await now(db)
    await apply(db, set_event(schedule_id, at=resumed, revision=4, cron="* * * * * *"))
    await Firing(db.outbox, grace=GRACE).tick()
    assert all(t > resumed for t in await fired(db, schedule_id))

    await apply(
        db,
        ScheduleDeleted.new(
            ScheduleDeletedPayload(schedule_id=schedule_id, revision=5),
            producer="test",
            workspace_id=uuid.uuid4(),
        ),
    )
    assert await db.pool.fetchval(
        "SELECT deleted AND next_fire_at IS NULL FROM schedules WHERE id = $1", schedule_id
    )
