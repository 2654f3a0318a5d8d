"""From job events to deliveries: the ``webhooks-jobs`` projection.

``job.submitted`` leaves a summary of the job (what it runs, the ``webhook_url`` it names); an
event an endpoint can subscribe to makes one delivery for each enabled endpoint of the workspace
that subscribes to it, and one to the job's own ``webhook_url``. The deliveries are written in
the transaction that records the event in the inbox, under a unique (endpoint, event) key, so
each is made exactly once; sending them is the :mod:`sender`'s work.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import JobCancelled, JobFailed, JobSubmitted, JobSucceeded
from puras_common.ids import new_id
from puras_common.outbox import UnitOfWork

from puras_webhooks import signing

WEBHOOK_TYPES: Final[dict[str, str]] = {
    "job.succeeded": "job.succeeded",
    "job.failed": "job.failed",
    "job.cancelled": "job.cancelled",
    "job.input_requested": "job.waiting_for_input",
}
"""Internal event type -> the webhook event type an endpoint subscribes to."""
TERMINAL: Final = ("job.succeeded", "job.failed", "job.cancelled")


async def apply_batch(uow: UnitOfWork, deliveries: Sequence[Delivery]) -> None:
    """Fold a batch of job events, with a handful of statements whatever its size: most jobs'
    workspaces have no endpoint, and every job passes through here."""
    conn = uow.conn
    submitted = [d.event for d in deliveries if isinstance(d.event, JobSubmitted)]
    if submitted:
        await conn.executemany(
            """INSERT INTO jobs (id, workspace_id, summary, webhook_url) VALUES ($1, $2, $3, $4)
               ON CONFLICT (id) DO NOTHING""",
            [(e.job_id, e.workspace_id, summary(e), e.payload.webhook_url) for e in submitted],
        )
    sent = [d.event for d in deliveries if d.event.type in WEBHOOK_TYPES]
    if not sent:
        return
    jobs = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT id, summary, webhook_url FROM jobs WHERE id = ANY($1)",
            [e.job_id for e in sent],
        )
    }
    ended = [e.job_id for e in sent if e.type in TERMINAL]
    if ended:
        await conn.execute("UPDATE jobs SET finished_at = now() WHERE id = ANY($1)", ended)
    endpoints: dict[UUID | None, list[asyncpg.Record]] = defaultdict(list)
    for r in await conn.fetch(
        """SELECT id, workspace_id, url, events FROM endpoints
           WHERE workspace_id = ANY($1) AND kind = 'endpoint' AND enabled AND deleted_at IS NULL""",
        list({e.workspace_id for e in sent}),
    ):
        endpoints[r["workspace_id"]].append(r)
    rows: list[tuple[Any, ...]] = []
    for event in sent:
        job = jobs.get(event.job_id)
        body = payload(event, dict(job["summary"]) if job is not None else {})
        targets = [
            (r["id"], r["url"])
            for r in endpoints[event.workspace_id]
            if body["type"] in r["events"]
        ]
        if job is not None and job["webhook_url"]:
            targets.append((await ensure_job_url(conn, event.workspace_id), job["webhook_url"]))
        rows += [
            (
                new_id(),
                event.workspace_id,
                endpoint_id,
                url,
                event.job_id,
                body["type"],
                event.id,
                body,
            )
            for endpoint_id, url in targets
        ]
    if rows:
        await conn.executemany(
            """INSERT INTO deliveries (id, workspace_id, endpoint_id, url, job_id, event_type,
                                       source_event_id, payload)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (endpoint_id, source_event_id) DO NOTHING""",
            rows,
        )


def summary(event: JobSubmitted) -> dict[str, Any]:
    """What every delivery about this job says about it."""
    p = event.payload
    return {
        "id": str(event.job_id),
        "skill_name": p.skill_name,
        "skillpack": p.skillpack_slug,
        "deployment_id": str(p.deployment_id),
        "version": p.version,
        "parent_job_id": str(p.parent_job_id) if p.parent_job_id else None,
        "schedule_id": str(p.schedule_id) if p.schedule_id else None,
        "scheduled_for": p.scheduled_for.isoformat() if p.scheduled_for else None,
        "created_at": event.occurred_at.isoformat(),
    }


def payload(event: Event, about: dict[str, Any]) -> dict[str, Any]:
    """A delivery's body: ``{type, timestamp, data}``, ``data`` being the job as it now is."""
    p = event.payload.model_dump(mode="json")
    data: dict[str, Any] = {"id": str(event.job_id), **about, "attempt": p.get("attempt")}
    when = event.occurred_at.isoformat()
    if isinstance(event, JobSucceeded):
        data |= {
            "status": "succeeded",
            "result": p.get("result"),
            # Too large to inline in the event: GET /v1/jobs/{id} has it.
            "result_too_large": p.get("result_ref") is not None,
            "finished_at": when,
        }
    elif isinstance(event, JobFailed):
        data |= {
            "status": "failed",
            "error": p["error"],
            "error_detail": p.get("error_detail"),
            "finished_at": when,
        }
    elif isinstance(event, JobCancelled):
        data |= {"status": "cancelled", "error": p.get("reason"), "finished_at": when}
    else:
        data |= {"status": "waiting", "input_request": p}
    return {"type": WEBHOOK_TYPES[event.type], "timestamp": when, "data": data}


async def ensure_job_url(conn: asyncpg.Connection, workspace_id: UUID | None) -> UUID:
    """The workspace's job_url endpoint, made (with a secret no one has seen yet: rotate it to
    see one) the first time a job names a ``webhook_url``."""
    await conn.execute(
        """INSERT INTO endpoints (id, workspace_id, kind, events, secret)
           VALUES ($1, $2, 'job_url', $3, $4)
           ON CONFLICT (workspace_id) WHERE kind = 'job_url' AND deleted_at IS NULL DO NOTHING""",
        new_id(),
        workspace_id,
        list(WEBHOOK_TYPES.values()),
        signing.new_secret(),
    )
    found: UUID = await conn.fetchval(
        """SELECT id FROM endpoints
           WHERE workspace_id = $1 AND kind = 'job_url' AND deleted_at IS NULL""",
        workspace_id,
    )
    return found


async def prune(pool: asyncpg.Pool, *, older_than: datetime) -> None:
    """Forget the summaries of jobs that ended before ``older_than``."""
    await pool.execute("DELETE FROM jobs WHERE finished_at < $1", older_than)
