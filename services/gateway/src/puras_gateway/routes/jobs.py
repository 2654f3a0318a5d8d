"""``/v1/jobs``: submit (async, ``wait=true`` or ``stream=true``), list, read and cancel jobs."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from puras_common.api import (
    DEFAULT_PAGE_LIMIT,
    MAX_PAGE_LIMIT,
    ApiError,
    ErrorCode,
    JobOut,
    JobStatus,
    Page,
)
from puras_common.ids import parse_id
from pydantic import BaseModel

from puras_gateway import answers, cancel, jobs, submission
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.jobview import job_or_404, read_model_holds_shown, with_waiting
from puras_gateway.openapi import ERRORS
from puras_gateway.requests import JobRequest
from puras_gateway.sse import event_stream
from puras_gateway.waiting import wait_for_terminal

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": JobRequest.model_json_schema()}},
        },
    },
    responses={
        200: {
            "model": JobOut,
            "description": "wait=true: the job once ended (or at timeout); stream=true: text/event-stream",
        }
    },
)
async def submit_job(
    request: Request,
    gw: GatewayDep,
    who: PrincipalDep,
    wait: Annotated[
        bool, Query(description="Hold the request until the job ends or `timeout` passes")
    ] = False,
    timeout: Annotated[int | None, Query(description="Seconds to wait, 1–60 (default 30)")] = None,
    stream: Annotated[
        bool, Query(description="Answer with the job's events as Server-Sent Events")
    ] = False,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Any:
    if wait and stream:
        raise ApiError(
            ErrorCode.INVALID_REQUEST, "wait and stream are mutually exclusive: choose one"
        )
    if timeout is not None and not wait:
        raise ApiError(ErrorCode.INVALID_REQUEST, "timeout is only meaningful with wait=true")
    wait_seconds = 30 if timeout is None else timeout
    if not 1 <= wait_seconds <= 60:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"timeout={wait_seconds} is out of range: wait between 1 and 60 seconds",
            details=[{"pointer": "?timeout", "message": "must be in 1..60"}],
        )
    raw = await read_capped(
        request,
        gw.settings.max_request_bytes,
        hint="; upload files with POST /v1/drive/upload and pass their drive_path in inputs",
    )
    body = parse_model(JobRequest, raw)
    # A stream's place is taken before the job is: a refused stream leaves no job behind.
    slot = gw.streams.acquire(who.key_id or who.user_id) if stream else None
    replayed = False
    try:
        if idempotency_key is not None:
            job, replayed = await submission.submit_idempotent(
                gw, who, body, key=idempotency_key, body_sha256=hashlib.sha256(raw).digest()
            )
        else:
            job = await submission.submit(gw, who, body)
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    if slot is not None:
        return event_stream(gw, job.id, who.workspace_id, after=0, slot=slot)
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if wait:
        job = await wait_for_terminal(gw, job.id, who.workspace_id, timeout=wait_seconds)
        return JSONResponse(job.model_dump(mode="json"), status_code=200, headers=headers)
    return JSONResponse(
        job.model_dump(mode="json"), status_code=200 if replayed else 201, headers=headers
    )


def _cursor(job_id: UUID) -> str:
    return base64.urlsafe_b64encode(job_id.bytes).rstrip(b"=").decode()


def _from_cursor(cursor: str) -> UUID:
    try:
        return UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "cursor is not one this API returned",
            details=[{"pointer": "?cursor", "message": "invalid"}],
        ) from None


def _id_filter(value: str | None, name: str) -> UUID | None:
    if value is None or value == "":
        return None
    parsed = parse_id(value)
    if parsed is None:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"{name}={value[:80]!r} is not an id",
            details=[{"pointer": f"?{name}", "message": "expected a UUID"}],
        )
    return parsed


def _skill_filter(skill: str | None) -> tuple[str | None, str | None]:
    """``skill`` or ``skillpack/skill`` as (skillpack, skill)."""
    if not skill:
        return None, None
    pack, slash, name = skill.rpartition("/")
    return (pack if slash else None), name


@router.get("", response_model=Page[JobOut])
async def list_jobs(
    gw: GatewayDep,
    who: PrincipalDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    skill: Annotated[
        str | None,
        Query(max_length=200, description="Only jobs of this skill (or skillpack/skill)"),
    ] = None,
    key: Annotated[
        str | None, Query(description="Only jobs submitted with this API key (its id)")
    ] = None,
    parent: Annotated[
        str | None, Query(description="Only the subagents this job started (its id)")
    ] = None,
    created_after: Annotated[
        datetime | None, Query(description="Only jobs created at or after this time (ISO 8601)")
    ] = None,
    created_before: Annotated[
        datetime | None, Query(description="Only jobs created before this time (ISO 8601)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = DEFAULT_PAGE_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Page[JobOut]:
    """The workspace's jobs, newest first, narrowed by any of the filters."""
    before = _from_cursor(cursor) if cursor else None
    skillpack, skill_name = _skill_filter(skill)
    where = jobs.JobFilter(
        status=status,
        skillpack=skillpack,
        skill=skill_name,
        key_id=_id_filter(key, "key"),
        parent_job_id=_id_filter(parent, "parent"),
        created_after=created_after,
        created_before=created_before,
    )
    await read_model_holds_shown(gw, who.workspace_id)
    rows = await jobs.page(gw.db, who.workspace_id, where=where, before=before, limit=limit + 1)
    page = await with_waiting(gw, [jobs.job_out(r) for r in rows[:limit]], who.workspace_id)
    return Page[JobOut](data=page, next_cursor=_cursor(page[-1].id) if len(rows) > limit else None)


class JobCounts(BaseModel):
    """How many jobs created since ``since`` are in each status."""

    since: datetime
    by_status: dict[str, int]
    total: int


@router.get("/summary", response_model=JobCounts)
async def summary(
    gw: GatewayDep,
    who: PrincipalDep,
    days: Annotated[int, Query(ge=1, le=366, description="Jobs of the last N days")] = 7,
) -> JobCounts:
    """Jobs per status over the last ``days`` days."""
    since = datetime.now(UTC) - timedelta(days=days)
    await read_model_holds_shown(gw, who.workspace_id)
    counts = await jobs.count_by_status(gw.db, who.workspace_id, since=since)
    return JobCounts(since=since, by_status=counts, total=sum(counts.values()))


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, gw: GatewayDep, who: PrincipalDep) -> JobOut:
    return await job_or_404(gw, who, job_id)


class JobInputs(BaseModel):
    job_id: UUID
    skill: str
    """``skillpack/skill``: submit it again with these inputs to run the job again."""
    version: int
    inputs: dict[str, Any] | None
    """None for a job submitted before inputs were kept."""


@router.get("/{job_id}/inputs", response_model=JobInputs)
async def job_inputs(job_id: str, gw: GatewayDep, who: PrincipalDep) -> JobInputs:
    """The inputs a job was submitted with, to look at or to run it again."""
    job = await job_or_404(gw, who, job_id)
    row = await jobs.inputs_of(gw.db, job.id, who.workspace_id)
    inputs = row["inputs"] if row else None
    if row and row["inputs_ref"]:
        inputs = await gw.payloads.get(row["inputs_ref"])
    return JobInputs(
        job_id=job.id, skill=f"{job.skillpack}/{job.skill_name}", version=job.version, inputs=inputs
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses={202: {"model": JobOut, "description": "Running: the runner stops it"}},
)
async def cancel_job(job_id: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    job = await cancel.request_cancel(gw, who, await job_or_404(gw, who, job_id))
    status = 200 if job.status is JobStatus.CANCELLED else 202
    return JSONResponse(job.model_dump(mode="json"), status_code=status)


@router.post(
    "/{job_id}/input",
    response_model=JobOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": answers.InputAnswer.model_json_schema()}},
        },
    },
)
async def provide_input(job_id: str, request: Request, gw: GatewayDep, who: PrincipalDep) -> JobOut:
    """Answer the question a ``waiting`` job asked (its ``input_request``): the answer must
    match the question's ``answer_schema`` (400 with pointers under ``/answer``). The job is
    queued to run on with it; 409 when it is not waiting (or waits on another question)."""
    job = await job_or_404(gw, who, job_id)
    raw = await read_capped(request, answers.MAX_BODY_BYTES)
    return await answers.provide(gw, who, job, parse_model(answers.InputAnswer, raw))
