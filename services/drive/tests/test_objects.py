"""Object metadata is a projection of drive events: applied twice, late, or replayed from the
stream in any order, the rows come out the same."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from puras_common.bus import Delivery
from puras_common.events import ObjectOrigin
from puras_common.migrate import service_migrations
from puras_drive import objects
from puras_drive.objects import Metadata
from puras_testing import Infra, Scratch, scratch_schema

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("drive", objects.__file__)
    ) as s:
        yield s


async def rows(db: Scratch) -> list[tuple]:
    found = await db.pool.fetch(
        "SELECT path, bytes, origin_job_id, deleted_at IS NOT NULL AS deleted FROM objects ORDER BY path"
    )
    return [tuple(r) for r in found]


async def test_events_in_any_order_fold_to_the_same_rows(db: Scratch) -> None:
    ws, job = uuid.uuid4(), uuid.uuid4()
    history = [
        objects.written_event(
            ws,
            "a.png",
            size=1,
            content_type="image/png",
            written_at=T0,
            origin=None,
            source="upload",
        ),
        objects.written_event(
            ws,
            "a.png",
            size=2,
            content_type="image/png",
            written_at=T0 + timedelta(seconds=1),
            origin=ObjectOrigin(job_id=job, skill_name="thumb"),
            source="job",
        ),
        *objects.deleted_events(ws, ["a.png", "b.txt"], deleted_at=T0 + timedelta(seconds=2)),
        objects.written_event(
            ws,
            "b.txt",
            size=3,
            content_type="text/plain",
            written_at=T0 + timedelta(seconds=3),
            origin=None,
            source="upload",
        ),
    ]
    outcomes = set()
    for order in itertools.permutations(history):
        await db.pool.execute("TRUNCATE objects")
        for event in (*order, *order):  # every event twice
            async with db.outbox.transaction() as uow:
                await objects.apply(uow, Delivery(event, 1, 1, event.subject, None))  # type: ignore[arg-type]
        outcomes.add(tuple(await rows(db)))
    assert outcomes == {(("a.png", 0, None, True), ("b.txt", 3, None, False))}


async def test_recording_writes_the_row_and_the_event_together(db: Scratch) -> None:
    ws, job = uuid.uuid4(), uuid.uuid4()
    metadata = Metadata(db.outbox)
    event = objects.written_event(
        ws,
        "out/x.png",
        size=9,
        content_type="image/png",
        written_at=T0,
        origin=ObjectOrigin(job_id=job, skill_name="s", tool="media"),
        source="job",
    )
    await metadata.record([event])
    origin = await metadata.origin(ws, "out/x.png")
    assert (origin.job_id, origin.skill_name, origin.tool, origin.created_at) == (
        job,
        "s",
        "media",
        T0,
    )
    outbox = await db.pool.fetch("SELECT type, subject FROM outbox WHERE event_id = $1", event.id)
    assert [(r["type"], r["subject"]) for r in outbox] == [
        ("drive.object.written", f"drive.{ws}.object_written")
    ]
    assert (await metadata.origin(ws, "out/none.png")).job_id is None
