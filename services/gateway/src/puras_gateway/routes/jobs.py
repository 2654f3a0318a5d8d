"""``/v1/jobs``: submit (async or ``wait=true``) and read jobs."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode, JobOut, JobStatus
from puras_common.events import JobKind, JobSpec, JobSubmitted
from puras_common.ids import new_id, parse_id
from puras_common.payloads import payload_key
from puras_common.schemas import validate
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway import catalog, jobs
from puras_gateway.auth import GatewayDep, Principal, PrincipalDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.context import Gateway
from puras_gateway.notify import JOBS_CHANNEL

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

DEFAULT_TIMEOUT_SECONDS = 900
MAX_TIMEOUT_SECONDS = 3600


class JobRequest(BaseModel):
    """``POST /v1/jobs`` body."""

    model_config = ConfigDict(extra="forbid")

    skill: str = Field(min_length=1, max_length=300)
    inputs: dict[str, Any] = Field(default_factory=dict)
    skillpack: str | None = Field(default=None, min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1)


@router.post("", status_code=201, response_model=JobOut)
async def submit_job(
    request: Request,
    gw: GatewayDep,
    who: PrincipalDep,
    wait: Annotated[bool, Query(description="Hold the request until the job ends or `timeout` passes")] = False,
    timeout: Annotated[int | None, Query(description="Seconds to wait, 1–60 (default 30)")] = None,
) -> Any:
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
    job = await submit(gw, who, body)
    if wait:
        job = await wait_for_terminal(gw, job.id, who.workspace_id, timeout=wait_seconds)
        return JSONResponse(job.model_dump(mode="json"), status_code=200)
    return JSONResponse(
        job.model_dump(mode="json"), status_code=201, headers={"Location": f"/v1/jobs/{job.id}"}
    )


async def submit(gw: Gateway, who: Principal, body: JobRequest, *, parent_job_id: UUID | None = None) -> JobOut:
    """Resolve, validate and queue one job; returns it as queued."""
    address = catalog.parse_address(body.skill, skillpack=body.skillpack)
    async with gw.db.acquire() as conn:
        skill = await catalog.resolve(
            conn,
            caller_workspace_id=who.workspace_id,
            address=address,
            default_skillpack=who.skillpack,
            version=body.version,
        )
    if skill.input_schema is not None:
        problems = validate(skill.input_schema, body.inputs, root=("inputs",))
        if problems:
            raise ApiError(
                ErrorCode.VALIDATION_ERROR,
                f"inputs do not match the input_schema of {skill.name!r}: {problems[0].message} at {problems[0].pointer}",
                details=problems,
            )
    job_id = new_id()
    inputs: dict[str, Any] | None = body.inputs
    inputs_ref = None
    if len(orjson.dumps(body.inputs)) > gw.settings.inline_payload_bytes:
        inputs_ref = await gw.payloads.put(payload_key(who.workspace_id, job_id, "inputs"), body.inputs)
        inputs = None
    spec = JobSpec(
        skill_name=skill.name,
        skillpack_id=skill.skillpack_id,
        skillpack_slug=skill.skillpack_slug,
        owner_workspace_id=skill.owner_workspace_id,
        deployment_id=skill.deployment_id,
        version=skill.version,
        kind=JobKind(skill.kind),
        entrypoint=skill.entrypoint,
        timeout_seconds=min(skill.timeout_seconds or DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS),
        inputs=inputs,
        inputs_ref=inputs_ref,
        parent_job_id=parent_job_id,
        key_id=who.key_id,
    )
    event = JobSubmitted.new(spec, producer="gateway", workspace_id=who.workspace_id, job_id=job_id)
    async with gw.outbox.transaction() as uow:
        uow.emit(event)
        # The row exists as soon as the client holds its id; the projection fills the rest.
        await jobs.apply_event(uow.conn, event, seq=None)
    return JobOut(
        id=job_id,
        status=JobStatus.QUEUED,
        skill_name=skill.name,
        skillpack=skill.skillpack_slug,
        workspace=who.workspace_slug,
        deployment_id=skill.deployment_id,
        version=skill.version,
        attempt=0,
        parent_job_id=parent_job_id,
        created_at=event.occurred_at,
    )


async def load_job(gw: Gateway, job_id: UUID, workspace_id: UUID) -> JobOut | None:
    row = await jobs.fetch_job(gw.db, job_id, workspace_id)
    if row is None:
        return None
    result = await gw.payloads.get(row["result_ref"]) if row["result_ref"] else None
    return jobs.job_out(row, result=result)


async def wait_for_terminal(gw: Gateway, job_id: UUID, workspace_id: UUID, *, timeout: float) -> JobOut:
    """The job once terminal, or as it stands when ``timeout`` passes."""

    async def terminal() -> JobOut | None:
        job = await load_job(gw, job_id, workspace_id)
        if job is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"job {job_id} not found")
        return job if job.status.terminal else None

    done = await gw.notifier.wait_until(JOBS_CHANNEL, str(job_id), terminal, timeout=timeout, recheck_seconds=5.0)
    if done is not None:
        return done
    job = await load_job(gw, job_id, workspace_id)
    assert job is not None
    return job


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, gw: GatewayDep, who: PrincipalDep) -> JobOut:
    parsed = parse_id(job_id)
    job = await load_job(gw, parsed, who.workspace_id) if parsed else None
    if job is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"job {job_id} not found")
    return job
