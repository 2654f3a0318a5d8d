"""The jobs read model (from ``job.*`` events) and the job object.

Every event fills the columns it carries with an upsert, so events can be applied in any order;
a terminal status, once set, is never changed. Public events are stored under their JOBS stream
sequence, which is the id clients see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
from puras_common.api import PUBLIC_EVENT_TYPES, JobOut, JobStatus
from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import (
    JobCancelled,
    JobDispatched,
    JobFailed,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
)
from puras_common.outbox import UnitOfWork

from puras_gateway.notify import JOBS_CHANNEL

_TERMINAL = "('succeeded', 'failed', 'cancelled')"

_SUBMITTED = """
INSERT INTO jobs (id, workspace_id, skill_name, skillpack_id, skillpack_slug, owner_workspace_id,
                  deployment_id, version, kind, key_id, parent_job_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO UPDATE SET
    workspace_id = EXCLUDED.workspace_id, skill_name = EXCLUDED.skill_name,
    skillpack_id = EXCLUDED.skillpack_id, skillpack_slug = EXCLUDED.skillpack_slug,
    owner_workspace_id = EXCLUDED.owner_workspace_id, deployment_id = EXCLUDED.deployment_id,
    version = EXCLUDED.version, kind = EXCLUDED.kind, key_id = EXCLUDED.key_id,
    parent_job_id = EXCLUDED.parent_job_id, created_at = EXCLUDED.created_at
"""

_DISPATCHED = """
INSERT INTO jobs (id, attempt) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET attempt = greatest(jobs.attempt, EXCLUDED.attempt)
"""

_STARTED = f"""
INSERT INTO jobs (id, status, attempt, started_at) VALUES ($1, 'running', $2, $3)
ON CONFLICT (id) DO UPDATE SET
    status = CASE WHEN jobs.status IN {_TERMINAL} THEN jobs.status ELSE 'running' END,
    attempt = greatest(jobs.attempt, EXCLUDED.attempt),
    started_at = coalesce(jobs.started_at, EXCLUDED.started_at)
"""

_TERMINATED = f"""
INSERT INTO jobs (id, status, attempt, result, result_ref, error, error_detail, finished_at)
VALUES ($1, $2, coalesce($3, 0), $4, $5, $6, $7, $8)
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, attempt = greatest(jobs.attempt, EXCLUDED.attempt),
    result = EXCLUDED.result, result_ref = EXCLUDED.result_ref, error = EXCLUDED.error,
    error_detail = EXCLUDED.error_detail, finished_at = EXCLUDED.finished_at
WHERE jobs.status NOT IN {_TERMINAL}
"""


def public_payload(event: Event) -> dict[str, Any]:
    """What clients see of an event: its payload, less what is internal."""
    if isinstance(event, JobSubmitted):
        p = event.payload
        return {"skill": p.skill_name, "skillpack": p.skillpack_slug, "version": p.version}
    payload = event.payload.model_dump(mode="json")
    payload.pop("result_ref", None)
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
    for event, seq in events:
        if isinstance(event, JobSubmitted):
            p = event.payload
            submitted.append((
                event.job_id, event.workspace_id, p.skill_name, p.skillpack_id, p.skillpack_slug, p.owner_workspace_id,
                p.deployment_id, p.version, p.kind.value, p.key_id, p.parent_job_id, event.occurred_at,
            ))
        elif isinstance(event, JobDispatched):
            dispatched.append((event.job_id, event.payload.attempt))
        elif isinstance(event, JobStarted):
            started.append((event.job_id, event.payload.attempt, event.occurred_at))
        elif isinstance(event, JobSucceeded | JobFailed | JobCancelled):
            ended.append(_terminal_row(event))
        if seq is not None and (public := PUBLIC_EVENT_TYPES.get(event.type)) is not None:
            rows.append((seq, event.job_id, public, public_payload(event), event.occurred_at))
    for statement, args in (
        (_SUBMITTED, submitted), (_DISPATCHED, dispatched), (_STARTED, started), (_TERMINATED, ended), (_EVENT_ROW, rows),
    ):
        if len(args) == 1:
            await conn.execute(statement, *args[0])
        elif args:
            await conn.executemany(statement, args)
    if ended:
        await conn.execute("SELECT pg_notify($1, id::text) FROM unnest($2::uuid[]) AS id", JOBS_CHANNEL, [r[0] for r in ended])


def _terminal_row(event: JobSucceeded | JobFailed | JobCancelled) -> tuple[Any, ...]:
    p = event.payload
    result = result_ref = error = error_detail = None
    if isinstance(event, JobSucceeded):
        status, result, result_ref = JobStatus.SUCCEEDED, event.payload.result, event.payload.result_ref
    elif isinstance(event, JobFailed):
        status, error, error_detail = JobStatus.FAILED, event.payload.error, event.payload.error_detail
    else:
        status, error = JobStatus.CANCELLED, event.payload.reason
    return (event.job_id, status.value, p.attempt, result, result_ref, error, error_detail, event.occurred_at)


JOB_COLUMNS = """
j.id, j.status, j.skill_name, j.skillpack_slug, w.slug AS workspace_slug, j.deployment_id, j.version,
j.attempt, j.parent_job_id, j.result, j.result_ref, j.error, j.error_detail, j.created_at,
j.started_at, j.finished_at, j.key_id, j.workspace_id,
job_cost(j.id) AS cost_micros, job_total_cost(j.id) AS total_cost_micros
"""


async def fetch_job(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, workspace_id: UUID) -> asyncpg.Record | None:
    """A job of ``workspace_id`` once its submission is in the read model, else None."""
    return await conn.fetchrow(
        f"""SELECT {JOB_COLUMNS} FROM jobs j JOIN workspaces w ON w.id = j.workspace_id
            WHERE j.id = $1 AND j.workspace_id = $2 AND j.skill_name IS NOT NULL""",
        job_id, workspace_id,
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
        result=result if row["result_ref"] else row["result"],
        error=row["error"],
        error_detail=row["error_detail"],
        cost_micros=row.get("cost_micros") or 0,
        total_cost_micros=row.get("total_cost_micros") or 0,
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
