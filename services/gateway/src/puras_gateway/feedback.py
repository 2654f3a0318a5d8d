"""End users' feedback on a job's result: one row per (job, end user), overwritten in place when
the same end user sends again, and a ``feedback.submitted`` event for each submission."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from puras_common.db import fetch_one
from puras_common.events import FeedbackSubmitted
from puras_common.events.platform import FeedbackSubmittedPayload
from puras_common.outbox import Outbox


async def record(
    outbox: Outbox,
    *,
    workspace_id: UUID,
    job_id: UUID,
    end_user_id: str,
    rating: int,
    comment: str,
) -> asyncpg.Record:
    """Store (or overwrite) an end user's feedback on a job; the row as stored."""
    async with outbox.transaction() as uow:
        row = await fetch_one(
            uow.conn,
            """INSERT INTO job_feedback (job_id, end_user_id, workspace_id, rating, comment) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (job_id, end_user_id) DO UPDATE
               SET rating = EXCLUDED.rating, comment = EXCLUDED.comment, updated_at = now()
               RETURNING *""",
            job_id,
            end_user_id,
            workspace_id,
            rating,
            comment,
        )
        uow.emit(
            FeedbackSubmitted.new(
                FeedbackSubmittedPayload(
                    job_id=job_id, end_user_id=end_user_id, rating=rating, comment=comment
                ),
                producer="gateway",
                workspace_id=workspace_id,
            )
        )
    return row


async def of_job(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID) -> list[asyncpg.Record]:
    """A job's feedback, most recently updated first."""
    return await conn.fetch(
        "SELECT * FROM job_feedback WHERE job_id = $1 ORDER BY updated_at DESC", job_id
    )


async def tally(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID) -> asyncpg.Record:
    """``(up, down, count)`` of a job's feedback."""
    return await fetch_one(
        conn,
        """SELECT count(*) FILTER (WHERE rating = 1) AS up, count(*) FILTER (WHERE rating = -1) AS down,
                  count(*) AS count FROM job_feedback WHERE job_id = $1""",
        job_id,
    )
