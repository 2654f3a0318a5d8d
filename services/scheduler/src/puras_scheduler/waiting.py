"""Why a queued job waits, told when asked and announced when it changes.

The reason is read from the queue's own state, in this order (the first that applies):

* ``no_runner``: handed to the runners (``job.dispatched``) over ``NO_RUNNER_AFTER`` ago and
  not taken by one yet — no runner of its kind is up, or all are busy;
* ``no_credit``: the workspace's balance, as billing last reported it, is 0 or below;
* ``spend_cap``: the key it was submitted with spent its daily cap today (UTC). Such a job is
  failed at once with ``spend_cap_reached`` (by :meth:`Waiting.sweep`), since nothing it could
  call would be paid for before midnight;
* ``concurrency_limit``: its workspace has its limit of top-level jobs dispatched or running;
* ``queue``: only other jobs of its workspace are ahead of it (``queue_position`` counts them).

A sweep every second compares each queued job's reason with the one last announced and
publishes ``job.wait_changed`` for each change (public type ``waiting_reason``). A job starts
out as ``queue`` (its ``queued`` event says so), so a job dispatched at once announces nothing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Final
from uuid import UUID

import asyncpg
import orjson
from nats.aio.msg import Msg
from puras_common.bus import Delivery
from puras_common.db import as_connection
from puras_common.errors import dependency_down, while_away
from puras_common.events import JobWaitChanged, LedgerPosted
from puras_common.events.jobs import FailedPayload, WaitChangedPayload
from puras_common.logging import get_logger
from puras_common.money import format_usd
from puras_common.outbox import Outbox, UnitOfWork
from puras_common.queue_state import Waiting as JobWaiting
from puras_common.queue_state import WaitingReply, WaitingRequest
from pydantic import ValidationError

from puras_scheduler.tree import fail

log = get_logger("puras_scheduler.waiting")

NO_RUNNER_AFTER: Final = 2.0
"""Seconds a dispatched job may wait for a runner before it says so (a runner takes work in
milliseconds when one is free)."""
MAX_CHANGES: Final = 1000
"""Announcements per sweep; a larger change (a balance reaching zero under a big backlog) is
announced over the next sweeps."""

_TODAY = "(now() AT TIME ZONE 'UTC')::date"

_REASONS = f"""
WITH active AS (
    SELECT workspace_id, count(*) AS n FROM jobs
    WHERE status IN ('dispatched', 'running') AND spec->>'parent_job_id' IS NULL
    GROUP BY workspace_id
), line AS (
    -- Each queued top-level job's place in its workspace's queue, in one ordered pass of
    -- jobs_queued_roots.
    SELECT id, row_number() OVER (PARTITION BY workspace_id ORDER BY priority DESC, id) AS position
    FROM jobs
    WHERE status = 'queued' AND spec->>'parent_job_id' IS NULL {{line}}
)
SELECT j.id, j.workspace_id, j.waiting_reason AS announced, j.priority, j.status, l.position,
       CASE
         WHEN j.status = 'dispatched' AND j.dispatched_at < now() - make_interval(secs => $1) THEN 'no_runner'
         WHEN j.status = 'dispatched' THEN 'queue'
         WHEN coalesce(b.balance_micros, 0) <= 0 THEN 'no_credit'
         WHEN j.daily_cap_micros IS NOT NULL AND coalesce(ks.spent_micros, 0) >= j.daily_cap_micros THEN 'spend_cap'
         WHEN l.position IS NOT NULL AND coalesce(a.n, 0) + l.position > $2 THEN 'concurrency_limit'
         ELSE 'queue'
       END AS reason
FROM jobs j
LEFT JOIN line l ON l.id = j.id
LEFT JOIN balances b ON b.workspace_id = j.workspace_id
LEFT JOIN active a ON a.workspace_id = j.workspace_id
LEFT JOIN key_spend ks ON ks.key_id = j.key_id AND ks.day = {_TODAY}
WHERE j.status IN ('queued', 'dispatched') {{where}}
"""
"""Each waiting job's reason. A top-level job waits for its workspace's limit when the jobs
dispatched or running, with those ahead of it in the queue, leave it no slot; with a slot
free for it, the next dispatch round takes it (``queue``). So while a workspace's running count
moves around its limit, only the jobs at the head of its queue can change reason, not its
whole backlog at every sweep."""

_POSITION = """
SELECT count(*) + 1 FROM jobs q
WHERE q.workspace_id = $1 AND q.status = 'queued' AND q.spec->>'parent_job_id' IS NULL
  AND (q.priority > $2 OR (q.priority = $2 AND q.id < $3))
"""
"""A queued subagent's place: the top-level jobs of its workspace ahead of it."""

_ANNOUNCE = """
UPDATE jobs j SET waiting_reason = c.reason
FROM unnest($1::uuid[], $2::text[]) AS c(id, reason)
WHERE j.id = c.id
  AND j.id IN (SELECT id FROM jobs WHERE id = ANY($1) AND status IN ('queued', 'dispatched')
               FOR UPDATE SKIP LOCKED)
RETURNING j.id, j.workspace_id, c.reason
"""

_FAIL_CAPPED = f"""
UPDATE jobs j SET status = 'failed', finished_at = now()
FROM key_spend ks
WHERE ks.key_id = j.key_id AND ks.day = {_TODAY} AND ks.spent_micros >= j.daily_cap_micros
  AND j.id IN (SELECT id FROM jobs WHERE status = 'queued' AND key_id IS NOT NULL
               AND daily_cap_micros IS NOT NULL LIMIT 1000 FOR UPDATE SKIP LOCKED)
RETURNING j.id, j.workspace_id, j.attempt, ks.spent_micros, j.daily_cap_micros
"""


async def apply_spend(uow: UnitOfWork, d: Delivery) -> None:
    """Fold a charge into its key's spend for the UTC day of the call."""
    event = d.event
    if not isinstance(event, LedgerPosted):
        return
    p = event.payload
    if p.key_id is None or p.usage is None or p.kind != "charge":
        return
    day = _utc_day(p.usage.recorded_at)
    await uow.conn.execute(
        """INSERT INTO key_spend (key_id, day, spent_micros) VALUES ($1, $2, $3)
           ON CONFLICT (key_id, day) DO UPDATE SET spent_micros = key_spend.spent_micros + EXCLUDED.spent_micros""",
        p.key_id,
        day,
        -p.amount_micros,
    )


def _utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


async def _position(conn: asyncpg.Connection, row: asyncpg.Record) -> int | None:
    """A waiting job's place in its workspace's queue; None once it was handed to the runners."""
    if row["status"] != "queued":
        return None
    if row["position"] is not None:
        return int(row["position"])
    return int(await conn.fetchval(_POSITION, row["workspace_id"], row["priority"], row["id"]))


class Waiting:
    def __init__(self, outbox: Outbox, *, max_per_workspace: int) -> None:
        self.outbox = outbox
        self.max_per_workspace = max_per_workspace

    async def explain(self, workspace_id: UUID, job_ids: list[UUID]) -> dict[UUID, JobWaiting]:
        """Why each of ``job_ids`` (of ``workspace_id``) waits; jobs not waiting are left out."""
        async with self.outbox.pool.acquire() as pooled:
            conn = as_connection(pooled)
            rows = await conn.fetch(
                _REASONS.format(
                    line="AND workspace_id = $3", where="AND j.workspace_id = $3 AND j.id = ANY($4)"
                ),
                NO_RUNNER_AFTER,
                self.max_per_workspace,
                workspace_id,
                job_ids,
            )
            return {
                r["id"]: JobWaiting(reason=r["reason"], queue_position=await _position(conn, r))
                for r in rows
            }

    async def sweep(self) -> int:
        """Fail the jobs of spent caps, announce changed reasons; returns how many jobs."""
        async with self.outbox.transaction() as uow:
            failed = await self._fail_capped(uow)
            rows = await uow.conn.fetch(
                _REASONS.format(line="", where="") + " ORDER BY j.id",
                NO_RUNNER_AFTER,
                self.max_per_workspace,
            )
            changed = [r for r in rows if r["reason"] != (r["announced"] or "queue")]
            changed = changed[:MAX_CHANGES]
            if not changed:
                return failed
            announced = await uow.conn.fetch(
                _ANNOUNCE, [r["id"] for r in changed], [r["reason"] for r in changed]
            )
            positions = {r["id"]: await _position(uow.conn, r) for r in changed}
            for row in announced:
                uow.emit(
                    JobWaitChanged.new(
                        WaitChangedPayload(
                            reason=row["reason"], queue_position=positions.get(row["id"])
                        ),
                        producer="scheduler",
                        workspace_id=row["workspace_id"],
                        job_id=row["id"],
                    )
                )
        return failed + len(announced)

    async def _fail_capped(self, uow: UnitOfWork) -> int:
        rows = await uow.conn.fetch(_FAIL_CAPPED)
        for row in rows:
            spent, cap = row["spent_micros"], row["daily_cap_micros"]
            await fail(
                uow,
                row,
                FailedPayload(
                    attempt=row["attempt"] or None,
                    reason="spend_cap_reached",
                    error=(
                        f"spend_cap_reached: the key this job was submitted with spent "
                        f"{spent} micros (${format_usd(spent)}) today (UTC), its whole daily "
                        f"cap of {cap} micros, before the job could start. It resets at "
                        "midnight UTC"
                    ),
                    error_detail={
                        "code": "spend_cap_reached",
                        "spent_today_micros": spent,
                        "daily_cap_micros": cap,
                    },
                ),
            )
        return len(rows)

    async def run(self, *, interval: float = 1.0) -> None:
        while True:
            await while_away(self.sweep, what="waiting reasons")
            await asyncio.sleep(interval)

    async def serve(self, msg: Msg) -> None:
        try:
            request = WaitingRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            await msg.respond(orjson.dumps({"error": str(exc)}))
            return
        try:
            jobs = await self.explain(request.workspace_id, request.job_ids)
        except Exception as exc:
            if not dependency_down(exc):
                raise
            return  # the gateway shows the job without a reason rather than late
        await msg.respond(WaitingReply(jobs=jobs).model_dump_json().encode())
