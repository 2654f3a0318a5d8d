"""Firing schedules: each fire time of a schedule starts exactly one job.

The gateway owns what a schedule runs; this service keeps only its timing (folded from
``schedule.set`` and ``schedule.deleted``) and decides its fire times. Any number of replicas
run :class:`Firing`: a due schedule's row is claimed with ``FOR UPDATE SKIP LOCKED``, its due
fire times are each inserted under the unique key (schedule, fire time), and only an inserted
row emits ``schedule.fired`` (with the id the job will have), in the same transaction. So a fire
time decided twice, by two replicas or after a restart, still starts one job; the gateway
submits it on ``schedule.fired``.

Fire times are read on the database's clock, one clock for every replica. A fire time that is
late by up to ``grace`` (the service was busy, or restarting) is still fired; older ones were
missed while no scheduler ran, and the schedule's policy skips them or catches up a bounded
number.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any, Final

from puras_common.bus import Delivery
from puras_common.cron import Cron
from puras_common.errors import while_away
from puras_common.events import ScheduleDeleted, ScheduleFired, ScheduleSet
from puras_common.events.schedules import ScheduleFiredPayload
from puras_common.ids import new_id
from puras_common.logging import get_logger
from puras_common.observability import SCHEDULE_FIRES, SCHEDULE_LATENESS_SECONDS
from puras_common.outbox import Outbox, UnitOfWork

log = get_logger("puras_scheduler.schedules")

BATCH: Final = 50
PRODUCER: Final = "scheduler"


async def apply(uow: UnitOfWork, d: Delivery) -> None:
    """Fold a schedule's timing; only a newer revision changes anything."""
    event = d.event
    if isinstance(event, ScheduleSet):
        await _set(uow, event)
    elif isinstance(event, ScheduleDeleted):
        await uow.conn.execute(
            """UPDATE schedules SET deleted = true, next_fire_at = NULL, revision = $2
               WHERE id = $1 AND revision < $2""",
            event.payload.schedule_id,
            event.payload.revision,
        )


async def _set(uow: UnitOfWork, event: ScheduleSet) -> None:
    p = event.payload
    row = await uow.conn.fetchrow("SELECT * FROM schedules WHERE id = $1 FOR UPDATE", p.schedule_id)
    if row is not None and row["revision"] >= p.revision:
        return
    # Fire times count from a change of timing or a resume, never from before it.
    restart = row is None or (
        row["cron"] != p.cron
        or row["timezone"] != p.timezone
        or (row["paused"] and not p.paused)
        or row["deleted"]
    )
    cursor = event.occurred_at
    if row is not None and not restart:
        cursor = row["cursor_at"]
    elif row is not None:
        cursor = max(row["cursor_at"], event.occurred_at)
    next_fire = None if p.paused else _next(p.cron, p.timezone, cursor)
    await uow.conn.execute(
        """INSERT INTO schedules (id, workspace_id, cron, timezone, missed, catch_up_limit, paused,
                                  revision, cursor_at, next_fire_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (id) DO UPDATE SET cron = $3, timezone = $4, missed = $5,
               catch_up_limit = $6, paused = $7, revision = $8, cursor_at = $9,
               next_fire_at = $10, deleted = false""",
        p.schedule_id,
        event.workspace_id,
        p.cron,
        p.timezone,
        p.missed,
        p.catch_up_limit,
        p.paused,
        p.revision,
        cursor,
        next_fire,
    )


def _next(cron: str, timezone: str, after: datetime) -> datetime | None:
    try:
        return Cron(cron, timezone).next_after(after)
    except Exception:  # checked by the gateway; one broken row must not stop the rest
        log.exception("cannot evaluate a schedule", cron=cron, timezone=timezone)
        return None


class Firing:
    """The loop that fires due schedules; safe to run on every replica."""

    def __init__(
        self, outbox: Outbox, *, grace: timedelta, retention: timedelta = timedelta(days=2)
    ) -> None:
        self.outbox = outbox
        self.grace = grace
        self.retention = retention
        self.wake = asyncio.Event()
        self.fired = 0

    async def run(self, *, max_sleep: float = 1.0) -> None:
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self.wake.clear()
            while await while_away(self.tick, what="schedules") == BATCH:
                pass
            if loop.time() - last_prune > 60:
                await while_away(self.prune, what="schedules pruning")
                last_prune = loop.time()
            wait = await while_away(lambda: self._until_next(max_sleep), what="schedules")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)

    async def _until_next(self, max_sleep: float) -> float:
        seconds: float | None = await self.outbox.pool.fetchval(
            """SELECT extract(epoch FROM min(next_fire_at) - clock_timestamp())::float8
               FROM schedules WHERE next_fire_at IS NOT NULL"""
        )
        if seconds is None:
            return max_sleep
        return min(max_sleep, max(0.0, seconds))

    async def tick(self) -> int:
        """Fire every due schedule (a batch of them); returns how many schedules were due."""
        async with self.outbox.transaction() as uow:
            now = await uow.conn.fetchval("SELECT clock_timestamp()")
            rows = await uow.conn.fetch(
                """SELECT * FROM schedules WHERE next_fire_at <= $1
                   ORDER BY next_fire_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
                now,
                BATCH,
            )
            for row in rows:
                await self._fire(uow, row, now)
        return len(rows)

    async def _fire(self, uow: UnitOfWork, row: Any, now: datetime) -> None:
        cron = Cron(row["cron"], row["timezone"])
        times = cron.due(
            after=row["cursor_at"],
            now=now,
            grace=self.grace,
            missed=row["missed"],
            catch_up_limit=row["catch_up_limit"],
        )
        for fire_at in times:
            job_id = new_id()
            inserted = await uow.conn.fetchval(
                """INSERT INTO schedule_fires (schedule_id, fire_at, job_id) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING RETURNING true""",
                row["id"],
                fire_at,
                job_id,
            )
            SCHEDULE_FIRES.labels(outcome="fired" if inserted else "duplicate").inc()
            if inserted:
                SCHEDULE_LATENESS_SECONDS.observe(max(0.0, (now - fire_at).total_seconds()))
                uow.emit(
                    ScheduleFired.new(
                        ScheduleFiredPayload(schedule_id=row["id"], fire_at=fire_at, job_id=job_id),
                        producer=PRODUCER,
                        workspace_id=row["workspace_id"],
                    )
                )
                self.fired += 1
        await uow.conn.execute(
            "UPDATE schedules SET cursor_at = $2, next_fire_at = $3 WHERE id = $1",
            row["id"],
            now,
            cron.next_after(now),
        )

    async def prune(self) -> int:
        """Forget fire times older than the retention: the cursor has long passed them."""
        result = await self.outbox.pool.execute(
            "DELETE FROM schedule_fires WHERE fired_at < now() - $1::interval", self.retention
        )
        return int(result.split()[-1])
