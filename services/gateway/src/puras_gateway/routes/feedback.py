"""``/v1/jobs/{id}/feedback``: end users' thumbs up or down and comments on a job's result.

One row per (job, end user); submitting again overwrites it in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from puras_common.api import ApiError, ErrorCode
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway import feedback
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.jobview import job_or_404
from puras_gateway.openapi import ERRORS

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
        job_id=str(row["job_id"]),
        end_user_id=row["end_user_id"],
        rating=row["rating"],
        comment=row["comment"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@router.post("/{job_id}/feedback", response_model=FeedbackOut)
async def submit_feedback(
    job_id: str, request: Request, gw: GatewayDep, who: PrincipalDep
) -> FeedbackOut:
    job = await job_or_404(gw, who, job_id)
    body = parse_model(FeedbackIn, await read_capped(request, 64 * 1024))
    if body.rating == 0 and not body.comment.strip():
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "feedback needs a rating of -1 or 1, or a comment",
            details=[{"pointer": "/rating", "message": "0 without a comment"}],
        )
    row = await feedback.record(
        gw.outbox,
        workspace_id=who.workspace_id,
        job_id=job.id,
        end_user_id=body.end_user_id,
        rating=body.rating,
        comment=body.comment,
    )
    return _out(row)


@router.get("/{job_id}/feedback", response_model=FeedbackList)
async def list_feedback(job_id: str, gw: GatewayDep, who: PrincipalDep) -> FeedbackList:
    job = await job_or_404(gw, who, job_id)
    rows = await feedback.of_job(gw.db, job.id)
    return FeedbackList(data=[_out(r) for r in rows])


@router.get("/{job_id}/feedback/stats", response_model=FeedbackStats)
async def feedback_stats(job_id: str, gw: GatewayDep, who: PrincipalDep) -> FeedbackStats:
    job = await job_or_404(gw, who, job_id)
    row = await feedback.tally(gw.db, job.id)
    return FeedbackStats(
        up=row["up"], down=row["down"], count=row["count"], score=row["up"] - row["down"]
    )
