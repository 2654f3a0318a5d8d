"""The jobs read model (from ``job.*`` events) and the job object.

Every event fills the columns it carries with an upsert, so events can be applied in any order;
a terminal status, once set, is never changed. Public events are stored under their JOBS stream
sequence, which is the id clients see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from puras_common.api import (
    PUBLIC_EVENT_TYPES,
    TERMINAL_SQL,
    InputRequestOut,
    JobOut,
    JobStatus,
)
from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import (
    JobCancelled,
    JobDispatched,
    JobFailed,
    JobInputProvided,
    JobInputRequested,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
    JobUsageRecorded,
)
from puras_common.events.jobs import JobUsagePayload
from puras_common.outbox import UnitOfWork

from puras_gateway.ledger import add_usage, usage_row
from puras_gateway.notify import JOBS_CHANNEL

_SUBMITTED = """
INSERT INTO jobs (id, workspace_id, skill_name, skillpack_id, skillpack_slug, owner_workspace_id,
                  deployment_id, version, kind, key_id, parent_job_id, created_at, inputs, inputs_ref,
                  schedule_id, scheduled_for)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (id) DO UPDATE SET
    workspace_id = EXCLUDED.workspace_id, skill_name = EXCLUDED.skill_name,
    skillpack_id = EXCLUDED.skillpack_id, skillpack_slug = EXCLUDED.skillpack_slug,
    owner_workspace_id = EXCLUDED.owner_workspace_id, deployment_id = EXCLUDED.deployment_id,
    version = EXCLUDED.version, kind = EXCLUDED.kind, key_id = EXCLUDED.key_id,
    parent_job_id = EXCLUDED.parent_job_id, created_at = EXCLUDED.created_at,
    inputs = EXCLUDED.inputs, inputs_ref = EXCLUDED.inputs_ref,
    schedule_id = EXCLUDED.schedule_id, scheduled_for = EXCLUDED.scheduled_for
"""

_DISPATCHED = """
INSERT INTO jobs (id, attempt) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET attempt = greatest(jobs.attempt, EXCLUDED.attempt)
"""
"""``job.dispatched``, found only in streams written before the scheduler stopped emitting it:
a replay of one keeps the attempts it showed."""

_STARTED = f"""
INSERT INTO jobs (id, status, attempt, started_at) VALUES ($1, 'running', $2, $3)
ON CONFLICT (id) DO UPDATE SET
    status = CASE WHEN jobs.status IN {TERMINAL_SQL} THEN jobs.status ELSE 'running' END,
    attempt = greatest(jobs.attempt, EXCLUDED.attempt),
    started_at = coalesce(jobs.started_at, EXCLUDED.started_at)
"""

_ASKED = f"""
UPDATE jobs SET status = 'waiting', input_request = $2
WHERE id = $1 AND status NOT IN {TERMINAL_SQL} AND attempt <= $3
"""
"""A question is the job's state only while no later attempt has been dispatched (a batch
folds its statements by kind, so a later attempt's start may already be in)."""

ANSWERED = """
UPDATE jobs SET status = 'queued', input_request = NULL
WHERE id = $1 AND status = 'waiting' AND input_request->>'request_id' = $2
RETURNING id
"""
"""The answer to the question the job waits on: it is queued to run on."""

_TERMINATED = f"""
WITH ended AS (
    INSERT INTO jobs (id, status, attempt, result, result_ref, error, error_detail, finished_at)
    VALUES ($1, $2, coalesce($3, 0), $4, $5, $6, $7, $8)
    ON CONFLICT (id) DO UPDATE SET
        status = EXCLUDED.status, attempt = greatest(jobs.attempt, EXCLUDED.attempt),
        result = EXCLUDED.result, result_ref = EXCLUDED.result_ref, error = EXCLUDED.error,
        error_detail = EXCLUDED.error_detail, finished_at = EXCLUDED.finished_at,
        input_request = NULL
    WHERE jobs.status NOT IN {TERMINAL_SQL}
    RETURNING id
)
SELECT pg_notify('{JOBS_CHANNEL}', id::text) FROM ended
"""
"""A job's end, and the notification of its waiters (in the same round trip); an end after
its end changes nothing and wakes nobody."""


_INTERNAL_USAGE = {"ledger": True, "key_id": True}
"""What a usage row's payload holds that clients do not see."""


def public_payload(event: Event) -> dict[str, Any]:
    """What clients see of an event: its payload, less what is internal."""
    if isinstance(event, JobSubmitted):
        p = event.payload
        shown = {"skill": p.skill_name, "skillpack": p.skillpack_slug, "version": p.version}
        if p.schedule_id is not None:
            when = p.scheduled_for.isoformat() if p.scheduled_for else None
            shown |= {"schedule_id": str(p.schedule_id), "scheduled_for": when}
        return shown
    if isinstance(event, JobUsageRecorded):
        return event.payload.model_dump(mode="json", exclude=_INTERNAL_USAGE)
    payload = event.payload.model_dump(
        mode="json", exclude={"result_ref": True, "compute": _INTERNAL_USAGE}
    )
    if payload.get("compute") is None:
        payload.pop("compute", None)
    return payload


_EVENT_ROW = """
INSERT INTO job_events (seq, job_id, type, payload, created_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (seq) DO NOTHING
"""


async def apply_batch(uow: UnitOfWork, deliveries: Sequence[Delivery]) -> None:
    """Fold a batch of delivered job events."""
    await fold(uow.conn, [(d.event, d.stream_seq) for d in deliveries])


async def fold(conn: asyncpg.Connection, events: Sequence[tuple[Event, int | None]]) -> None:
    """Fold events into the read model, with one pipelined statement per kind of change.

    The changes commute (each fills its own columns, a terminal status is final), so grouping
    them changes nothing but the number of round trips. An event's sequence is None when it is
    applied inline at submit, before the stream has numbered it: then it gets no event row yet.
    """
    submitted, dispatched, started, ended, rows = [], [], [], [], []
    asked: list[tuple[Any, ...]] = []
    answered: list[tuple[Any, ...]] = []
    usage: dict[UUID, tuple[Any, ...]] = {}
    for event, seq in events:
        if isinstance(event, JobSubmitted):
            p = event.payload
            submitted.append(
                (
                    event.job_id,
                    event.workspace_id,
                    p.skill_name,
                    p.skillpack_id,
                    p.skillpack_slug,
                    p.owner_workspace_id,
                    p.deployment_id,
                    p.version,
                    p.kind.value,
                    p.key_id,
                    p.parent_job_id,
                    event.occurred_at,
                    p.inputs,
                    p.inputs_ref,
                    p.schedule_id,
                    p.scheduled_for,
                )
            )
        elif isinstance(event, JobDispatched):
            dispatched.append((event.job_id, event.payload.attempt))
        elif isinstance(event, JobStarted):
            started.append((event.job_id, event.payload.attempt, event.occurred_at))
        elif isinstance(event, JobSucceeded | JobFailed | JobCancelled):
            ended.append(_terminal_row(event))
        elif isinstance(event, JobInputRequested):
            question = event.payload
            asked.append((event.job_id, question.model_dump(mode="json"), question.attempt))
        elif isinstance(event, JobInputProvided):
            answered.append((event.job_id, str(event.payload.request_id)))
        if (u := _free_usage(event)) is not None and event.workspace_id is not None:
            usage[u.usage_id] = usage_row(
                u.usage_id, event.workspace_id, event.job_id, u.key_id, u, event.occurred_at
            )
        if seq is not None and (public := PUBLIC_EVENT_TYPES.get(event.type)) is not None:
            rows.append((seq, event.job_id, public, public_payload(event), event.occurred_at))
    for statement, args in (
        (_SUBMITTED, submitted),
        (_DISPATCHED, dispatched),
        (_STARTED, started),
        (_ASKED, asked),
        (ANSWERED, answered),
        (_TERMINATED, ended),
        (_EVENT_ROW, rows),
    ):
        if len(args) == 1:
            await conn.execute(statement, *args[0])
        elif args:
            await conn.executemany(statement, args)
    await add_usage(conn, usage.values())


def _free_usage(event: Event) -> JobUsagePayload | None:
    """A usage row the ledger does not bring: a ``job.usage`` of compute that cost nothing, or
    the same row carried as ``compute`` by the event that ended an attempt."""
    usage: Any = (
        event.payload
        if isinstance(event, JobUsageRecorded)
        else getattr(event.payload, "compute", None)
    )
    return usage if isinstance(usage, JobUsagePayload) and not usage.ledger else None


def _terminal_row(event: JobSucceeded | JobFailed | JobCancelled) -> tuple[Any, ...]:
    p = event.payload
    result = result_ref = error = error_detail = None
    if isinstance(event, JobSucceeded):
        status, result, result_ref = (
            JobStatus.SUCCEEDED,
            event.payload.result,
            event.payload.result_ref,
        )
    elif isinstance(event, JobFailed):
        status, error, error_detail = (
            JobStatus.FAILED,
            event.payload.error,
            event.payload.error_detail,
        )
    else:
        status, error = JobStatus.CANCELLED, event.payload.reason
    return (
        event.job_id,
        status.value,
        p.attempt,
        result,
        result_ref,
        error,
        error_detail,
        event.occurred_at,
    )


COSTS = """
coalesce((SELECT c.cost_micros FROM job_costs c WHERE c.job_id = j.id), 0) AS cost_micros,
(WITH RECURSIVE tree(id) AS (
    SELECT j.id UNION SELECT k.id FROM jobs k JOIN tree t ON k.parent_job_id = t.id
 )
 SELECT coalesce(sum(c.cost_micros), 0)::bigint FROM job_costs c JOIN tree t ON c.job_id = t.id
) AS total_cost_micros
"""
"""A job's own cost and its subagent tree's, as columns of a query over ``jobs j``. Written
into the statement, so its plan covers them: as SQL functions with a search path of their own
they were planned again at every call, twice per job read (0.24 → 0.07–0.12 ms for one job,
3.9 → 3.0 ms for a page of 100)."""

JOB_COLUMNS = f"""
j.id, j.status, j.skill_name, j.skillpack_slug, w.slug AS workspace_slug, j.deployment_id, j.version,
j.attempt, j.parent_job_id, j.result, j.result_ref, j.error, j.error_detail, j.created_at,
j.started_at, j.finished_at, j.key_id, j.workspace_id, j.schedule_id, j.scheduled_for,
j.input_request, {COSTS}
"""


async def fetch_job(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, workspace_id: UUID
) -> asyncpg.Record | None:
    """A job of ``workspace_id`` once its submission is in the read model, else None."""
    return await conn.fetchrow(
        f"""SELECT {JOB_COLUMNS} FROM jobs j JOIN workspaces w ON w.id = j.workspace_id
            WHERE j.id = $1 AND j.workspace_id = $2 AND j.skill_name IS NOT NULL""",
        job_id,
        workspace_id,
    )


def job_out(row: asyncpg.Record, *, result: Any = None) -> JobOut:
    """The public job object for a read-model row (``result`` resolves a stored reference)."""
    return JobOut(
        id=row["id"],
        status=JobStatus(row["status"]),
        skill_name=row["skill_name"],
        skillpack=row["skillpack_slug"],
        workspace=row["workspace_slug"],
        deployment_id=row["deployment_id"],
        version=row["version"],
        attempt=row["attempt"],
        parent_job_id=row["parent_job_id"],
        key_id=row["key_id"],
        schedule_id=row["schedule_id"],
        scheduled_for=row["scheduled_for"],
        result=result if row["result_ref"] else row["result"],
        error=row["error"],
        error_detail=row["error_detail"],
        cost_micros=row.get("cost_micros") or 0,
        total_cost_micros=row.get("total_cost_micros") or 0,
        input_request=_input_request(row),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _input_request(row: asyncpg.Record) -> InputRequestOut | None:
    """The question of a waiting job, as clients see it."""
    question = row.get("input_request")
    if row["status"] != JobStatus.WAITING.value or not question:
        return None
    return InputRequestOut.model_validate(question)


@dataclass(frozen=True)
class JobFilter:
    """What a jobs list may be narrowed to; every field None means any."""

    status: JobStatus | None = None
    skillpack: str | None = None
    skill: str | None = None
    key_id: UUID | None = None
    parent_job_id: UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


async def page(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: UUID,
    *,
    where: JobFilter,
    before: UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to ``limit`` jobs of a workspace matching ``where``, newest first, older than
    ``before`` if given."""
    return await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM jobs j JOIN workspaces w ON w.id = j.workspace_id
            WHERE j.workspace_id = $1 AND j.skill_name IS NOT NULL
              AND ($2::text IS NULL OR j.status = $2) AND ($3::uuid IS NULL OR j.id < $3)
              AND ($4::text IS NULL OR j.skillpack_slug = $4) AND ($5::text IS NULL OR j.skill_name = $5)
              AND ($6::uuid IS NULL OR j.key_id = $6) AND ($7::uuid IS NULL OR j.parent_job_id = $7)
              AND ($8::timestamptz IS NULL OR j.created_at >= $8)
              AND ($9::timestamptz IS NULL OR j.created_at < $9)
            ORDER BY j.id DESC LIMIT $10""",
        workspace_id,
        where.status.value if where.status else None,
        before,
        where.skillpack,
        where.skill,
        where.key_id,
        where.parent_job_id,
        where.created_after,
        where.created_before,
        limit,
    )


async def count_by_status(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, *, since: datetime
) -> dict[str, int]:
    """How many of the workspace's jobs created since ``since`` are in each status."""
    rows = await conn.fetch(
        """SELECT status, count(*) AS n FROM jobs
           WHERE workspace_id = $1 AND skill_name IS NOT NULL AND created_at >= $2
           GROUP BY status""",
        workspace_id,
        since,
    )
    counts = {status.value: 0 for status in JobStatus}
    counts.update({r["status"]: r["n"] for r in rows})
    return counts


async def events_page(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, *, after: int, limit: int
) -> list[asyncpg.Record]:
    """A job's public events with a sequence above ``after``, in order."""
    return await conn.fetch(
        "SELECT seq, type, payload, created_at FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        job_id,
        after,
        limit,
    )


async def inputs_of(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, workspace_id: UUID
) -> asyncpg.Record | None:
    """The inputs a job of ``workspace_id`` was submitted with (or their payload object's key)."""
    return await conn.fetchrow(
        """SELECT inputs, inputs_ref FROM jobs
           WHERE id = $1 AND workspace_id = $2 AND skill_name IS NOT NULL""",
        job_id,
        workspace_id,
    )


async def submitting_key(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, workspace_id: UUID
) -> asyncpg.Record | None:
    """The row naming the key a job of ``workspace_id`` was submitted with (None: no such job)."""
    return await conn.fetchrow(
        "SELECT key_id FROM jobs WHERE id = $1 AND workspace_id = $2", job_id, workspace_id
    )


async def skill_of(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, workspace_id: UUID
) -> str | None:
    """The skill a job of ``workspace_id`` runs (None until its submission is in)."""
    skill: str | None = await conn.fetchval(
        "SELECT skill_name FROM jobs WHERE id = $1 AND workspace_id = $2", job_id, workspace_id
    )
    return skill


async def running_as(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, workspace_id: UUID
) -> asyncpg.Record | None:
    """What a job token's job runs, and its state: what endpoints for running jobs check."""
    return await conn.fetchrow(
        """SELECT skill_name, skillpack_id, skillpack_slug, owner_workspace_id, deployment_id, version, kind,
                  key_id, attempt, status, parent_job_id
           FROM jobs WHERE id = $1 AND workspace_id = $2 AND skill_name IS NOT NULL""",
        job_id,
        workspace_id,
    )


async def root_of(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID) -> tuple[UUID, int]:
    """The root of a job's subagent tree (the job an app submitted) and how many ancestors the
    job has (a job submitted by an app is its own root, at depth 0)."""
    row = await conn.fetchrow(
        """WITH RECURSIVE up(id, parent, depth) AS (
               SELECT id, parent_job_id, 0 FROM jobs WHERE id = $1
               UNION ALL
               SELECT j.id, j.parent_job_id, up.depth + 1 FROM jobs j JOIN up ON j.id = up.parent WHERE up.depth < 1000
           ) SELECT id, depth FROM up ORDER BY depth DESC LIMIT 1""",
        job_id,
    )
    return (row["id"], row["depth"]) if row is not None else (job_id, 0)


MAX_TREE_JOBS = 1000
"""How many jobs of a subagent tree :func:`tree_of` returns at most."""


async def tree_of(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, workspace_id: UUID
) -> list[UUID]:
    """``job_id`` and its subagents, their subagents and so on (within ``workspace_id``)."""
    rows = await conn.fetch(
        """WITH RECURSIVE down(id, depth) AS (
               SELECT id, 0 FROM jobs WHERE id = $1 AND workspace_id = $2
               UNION ALL
               SELECT j.id, down.depth + 1 FROM jobs j JOIN down ON j.parent_job_id = down.id
               WHERE j.workspace_id = $2 AND down.depth < 100
           ) SELECT id FROM down LIMIT $3""",
        job_id,
        workspace_id,
        MAX_TREE_JOBS,
    )
    return [r["id"] for r in rows]


async def count_descendant(
    conn: asyncpg.Connection, root_job_id: UUID, *, limit: int
) -> int | None:
    """Count one more subagent in the tree of ``root_job_id``: the tree's new total, or None
    (and nothing counted) when the tree already holds ``limit``."""
    total: int | None = await conn.fetchval(
        """INSERT INTO job_trees (root_job_id, descendants) VALUES ($1, 1)
           ON CONFLICT (root_job_id) DO UPDATE SET descendants = job_trees.descendants + 1
           WHERE job_trees.descendants < $2
           RETURNING descendants""",
        root_job_id,
        limit,
    )
    return total


async def lock_status(conn: asyncpg.Connection, job_id: UUID) -> JobStatus | None:
    """A job's status, its row locked until the transaction ends (None: no such job)."""
    status = await conn.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", job_id)
    return JobStatus(status) if status is not None else None


async def children_count(conn: asyncpg.Connection, job_id: UUID) -> int:
    """How many subagents a job has started."""
    children: int = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE parent_job_id = $1", job_id
    )
    return children


async def page_of_schedule(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: UUID,
    schedule_id: UUID,
    *,
    before: UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to ``limit`` jobs a schedule started, newest first, older than ``before`` if given."""
    return await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM jobs j JOIN workspaces w ON w.id = j.workspace_id
            WHERE j.schedule_id = $2 AND j.workspace_id = $1 AND j.skill_name IS NOT NULL
              AND ($3::uuid IS NULL OR j.id < $3)
            ORDER BY j.id DESC LIMIT $4""",
        workspace_id,
        schedule_id,
        before,
        limit,
    )
