"""``/v1/jobs/{id}/feedback``: end users' thumbs up or down and comments on a job's result.

One row per (job, end user); submitting again overwrites it in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from puras_common.api import ApiError, ErrorCode
from puras_common.events import FeedbackSubmitted
from puras_common.events.platform import FeedbackSubmittedPayload
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.routes.jobs import ERRORS, job_or_404

router = APIRouter(prefix="/v1/jobs", tags=["feedback"], responses=ERRORS)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal[-1, 0, 1] = 0
    comment: str = Field(default="", max_length=4000)
    end_user_id: str = Field(default="", max_length=200)


class FeedbackOut(BaseModel):
    job_id: str
    end_user_id: str
    rating: int
    comment: str
    created_at: datetime
    updated_at: datetime


class FeedbackList(BaseModel):
    data: list[FeedbackOut]


class FeedbackStats(BaseModel):
    up: int
    down: int
    count: int
    score: int
    """up − down."""


def _out(row: Any) -> FeedbackOut:
    return FeedbackOut(
        job_id=str(row["job_id"]), end_user_id=row["end_user_id"], rating=row["rating"], comment=row["comment"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


@router.post("/{job_id}/feedback", response_model=FeedbackOut)
async def submit_feedback(job_id: str, request: Request, gw: GatewayDep, who: PrincipalDep) -> FeedbackOut:
    job = await job_or_404(gw, who, job_id)
    body = parse_model(FeedbackIn, await read_capped(request, 64 * 1024))
    if body.rating == 0 and not body.comment.strip():
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "feedback needs a rating of -1 or 1, or a comment",
            details=[{"pointer": "/rating", "message": "0 without a comment"}],
        )
    async with gw.outbox.transaction() as uow:
        row = await uow.conn.fetchrow(
            """INSERT INTO job_feedback (job_id, end_user_id, workspace_id, rating, comment) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (job_id, end_user_id) DO UPDATE
               SET rating = EXCLUDED.rating, comment = EXCLUDED.comment, updated_at = now()
               RETURNING *""",
            job.id, body.end_user_id, who.workspace_id, body.rating, body.comment,
        )
        uow.emit(
            FeedbackSubmitted.new(
                FeedbackSubmittedPayload(job_id=job.id, end_user_id=body.end_user_id, rating=body.rating, comment=body.comment),
                producer="gateway",
                workspace_id=who.workspace_id,
            )
        )
    return _out(row)


@router.get("/{job_id}/feedback", response_model=FeedbackList)
async def list_feedback(job_id: str, gw: GatewayDep, who: PrincipalDep) -> FeedbackList:
    job = await job_or_404(gw, who, job_id)
    rows = await gw.db.fetch("SELECT * FROM job_feedback WHERE job_id = $1 ORDER BY updated_at DESC", job.id)
    return FeedbackList(data=[_out(r) for r in rows])


@router.get("/{job_id}/feedback/stats", response_model=FeedbackStats)
async def feedback_stats(job_id: str, gw: GatewayDep, who: PrincipalDep) -> FeedbackStats:
    job = await job_or_404(gw, who, job_id)
    row = await gw.db.fetchrow(
        """SELECT count(*) FILTER (WHERE rating = 1) AS up, count(*) FILTER (WHERE rating = -1) AS down,
                  count(*) AS count FROM job_feedback WHERE job_id = $1""",
        job.id,
    )
    return FeedbackStats(up=row["up"], down=row["down"], count=row["count"], score=row["up"] - row["down"])
