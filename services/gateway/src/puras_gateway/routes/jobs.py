"""``/v1/jobs``: submit (async, ``wait=true`` or ``stream=true``), list, read and cancel jobs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from puras_common.api import (
    DEFAULT_PAGE_LIMIT,
    MAX_PAGE_LIMIT,
    ApiError,
    ErrorBody,
    ErrorCode,
    JobOut,
    JobStatus,
    Page,
)
from puras_common.envelope import Event
from puras_common.events import (
    JobCancelled,
    JobCancelRequested,
    JobFailed,
    JobKind,
    JobSpec,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
)
from puras_common.events.jobs import TERMINAL_TYPES, CancelRequestedPayload
from puras_common.ids import new_id, parse_id
from puras_common.payloads import payload_key
from puras_common.schemas import validate

from puras_gateway import catalog, fences, jobs, outputs
from puras_gateway.auth import GatewayDep, Principal, PrincipalDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.context import Gateway
from puras_gateway.notify import JOBS_CHANNEL
from puras_gateway.requests import JobRequest

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Invalid request"),
        (401, "Missing, malformed, invalid or revoked API key"),
        (403, "Forbidden for this key"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Payload too large"),
        (422, "Inputs do not match the skill's input_schema"),
    )
}

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)

DEFAULT_TIMEOUT_SECONDS = 900
MAX_TIMEOUT_SECONDS = 3600
IDEMPOTENCY_WINDOW = "24 hours"


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": JobRequest.model_json_schema()}}},
    },
    responses={200: {"model": JobOut, "description": "wait=true: the job once ended (or at timeout); stream=true: text/event-stream"}},
)
async def submit_job(
    request: Request,
    gw: GatewayDep,
    who: PrincipalDep,
    wait: Annotated[bool, Query(description="Hold the request until the job ends or `timeout` passes")] = False,
    timeout: Annotated[int | None, Query(description="Seconds to wait, 1–60 (default 30)")] = None,
    stream: Annotated[bool, Query(description="Answer with the job's events as Server-Sent Events")] = False,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Any:
    if wait and stream:
        raise ApiError(ErrorCode.INVALID_REQUEST, "wait and stream are mutually exclusive: choose one")
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
    replayed = False
    if idempotency_key is not None:
        job, replayed = await submit_idempotent(gw, who, body, key=idempotency_key, body_sha256=hashlib.sha256(raw).digest())
    else:
        job = await submit(gw, who, body)
    if stream:
        from puras_gateway.routes.events import event_stream

        return event_stream(gw, job.id, who.workspace_id, after=0)
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if wait:
        job = await wait_for_terminal(gw, job.id, who.workspace_id, timeout=wait_seconds)
        return JSONResponse(job.model_dump(mode="json"), status_code=200, headers=headers)
    return JSONResponse(job.model_dump(mode="json"), status_code=200 if replayed else 201, headers=headers)


async def submit(
    gw: Gateway,
    who: Principal,
    body: JobRequest,
    *,
    parent_job_id: UUID | None = None,
    idempotency: tuple[str, bytes] | None = None,
) -> JobOut:
    """Resolve, validate and queue one job; returns it as queued."""
    address = catalog.parse_address(body.skill, skillpack=body.skillpack)
    async with gw.db.acquire() as conn:
        skill = await gw.skills.resolve(
            conn,
            caller_workspace_id=who.workspace_id,
            address=address,
            default_skillpack=who.skillpack,
            version=body.version,
        )
    await fences.admit(gw, who, skill)
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
        if idempotency is not None:
            key, digest = idempotency
            claimed = await uow.conn.fetchval(
                f"""INSERT INTO idempotency_keys (workspace_id, key, body_sha256, job_id) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (workspace_id, key) DO UPDATE
                    SET body_sha256 = EXCLUDED.body_sha256, job_id = EXCLUDED.job_id, created_at = now()
                    WHERE idempotency_keys.created_at <= now() - interval '{IDEMPOTENCY_WINDOW}'
                    RETURNING job_id""",
                who.workspace_id, key, digest, job_id,
            )
            if claimed is None:
                raise _KeyTaken  # another request holds the key: roll back, answer with its job
        uow.emit(event)
        # The row exists as soon as the client holds its id; the projection fills the rest.
        await jobs.fold(uow.conn, [(event, None)])
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


async def submit_idempotent(
    gw: Gateway, who: Principal, body: JobRequest, *, key: str, body_sha256: bytes
) -> tuple[JobOut, bool]:
    """The job an earlier request with this key and body created (within 24 h), or a new one.

    A concurrent request with the same key waits on the key's row until the first commits, then
    answers with the first one's job.
    """
    for _ in range(2):
        row = await gw.db.fetchrow(
            f"""SELECT body_sha256, job_id FROM idempotency_keys
                WHERE workspace_id = $1 AND key = $2 AND created_at > now() - interval '{IDEMPOTENCY_WINDOW}'""",
            who.workspace_id, key,
        )
        if row is not None:
            if row["body_sha256"] != body_sha256:
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"Idempotency-Key {key!r} was used within 24 h for a different request body",
                )
            job = await load_job(gw, row["job_id"], who.workspace_id)
            if job is not None:
                return job, True
        try:
            return await submit(gw, who, body, idempotency=(key, body_sha256)), False
        except _KeyTaken:
            continue  # a concurrent request with the same key won; read its job
    raise ApiError(ErrorCode.CONFLICT, f"Idempotency-Key {key!r} is in use by a request still being processed")


async def load_job(gw: Gateway, job_id: UUID, workspace_id: UUID) -> JobOut | None:
    row = await jobs.fetch_job(gw.db, job_id, workspace_id)
    if row is None:
        return None
    result = await gw.payloads.get(row["result_ref"]) if row["result_ref"] else None
    return await outputs.with_outputs(gw, jobs.job_out(row, result=result), workspace_id)


async def job_or_404(gw: Gateway, who: Principal, job_id: str) -> JobOut:
    parsed = parse_id(job_id)
    job = await load_job(gw, parsed, who.workspace_id) if parsed else None
    if job is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"job {job_id} not found")
    return job


async def wait_for_terminal(gw: Gateway, job_id: UUID, workspace_id: UUID, *, timeout: float) -> JobOut:
    """The job once terminal, or as it stands when ``timeout`` passes.

    The end is seen on this process's live subscription, usually before the read model has it;
    the answer then waits (briefly) for the read model too, so a client that reads the job or
    its events right after is never shown less than it was told. The read model's
    notification also covers an end that went by before the wait began.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with gw.live.watch(str(job_id)) as viewer, gw.notifier.watch(JOBS_CHANNEL, str(job_id)) as projected:
        job = await load_job(gw, job_id, workspace_id)
        if job is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"job {job_id} not found")
        while not job.status.terminal and (remaining := deadline - loop.time()) > 0:
            event_arrived = asyncio.ensure_future(viewer.queue.get())
            row_changed = asyncio.ensure_future(projected.wait())
            done, _ = await asyncio.wait({event_arrived, row_changed}, timeout=min(remaining, 5.0), return_when=asyncio.FIRST_COMPLETED)
            event_arrived.cancel()
            row_changed.cancel()
            if event_arrived in done:
                event = event_arrived.result().event
                if isinstance(event, JobStarted) and job.started_at is None:
                    job = job.model_copy(update={"status": JobStatus.RUNNING, "started_at": event.occurred_at})
                elif event.type in TERMINAL_TYPES:
                    projected_job = await gw.notifier.wait_until(
                        JOBS_CHANNEL, str(job_id), lambda: _ended_in_read_model(gw, job_id, workspace_id),
                        timeout=max(0.0, deadline - loop.time()),
                    )
                    return projected_job or await terminal_from_event(gw, job, event) or job
                continue
            projected.clear()
            job = await load_job(gw, job_id, workspace_id) or job
        return job


async def _ended_in_read_model(gw: Gateway, job_id: UUID, workspace_id: UUID) -> JobOut | None:
    """The job as the read model has it, once that shows its end (its events are in by then)."""
    job = await load_job(gw, job_id, workspace_id)
    return job if job is not None and job.status.terminal else None


async def terminal_from_event(gw: Gateway, job: JobOut, event: Event) -> JobOut | None:
    """``job`` as its terminal event leaves it, or None if the event is not terminal."""
    if isinstance(event, JobSucceeded):
        p = event.payload
        result = await gw.payloads.get(p.result_ref) if p.result_ref else p.result
        ended = job.model_copy(update={"status": JobStatus.SUCCEEDED, "result": result, "attempt": p.attempt})
        assert event.workspace_id is not None
        ended = await outputs.with_outputs(gw, ended, event.workspace_id)
    elif isinstance(event, JobFailed):
        p = event.payload
        ended = job.model_copy(update={"status": JobStatus.FAILED, "error": p.error, "error_detail": p.error_detail, "attempt": p.attempt or job.attempt})
    elif isinstance(event, JobCancelled):
        ended = job.model_copy(update={"status": JobStatus.CANCELLED, "error": event.payload.reason})
    else:
        return None
    return ended.model_copy(update={"finished_at": event.occurred_at})


class _KeyTaken(Exception):
    """The idempotency key was claimed by a concurrent request."""


def _cursor(job_id: UUID) -> str:
    return base64.urlsafe_b64encode(job_id.bytes).rstrip(b"=").decode()


def _from_cursor(cursor: str) -> UUID:
    try:
        return UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise ApiError(
            ErrorCode.INVALID_REQUEST, "cursor is not one this API returned", details=[{"pointer": "?cursor", "message": "invalid"}]
        ) from None


@router.get("", response_model=Page[JobOut])
async def list_jobs(
    gw: GatewayDep,
    who: PrincipalDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = DEFAULT_PAGE_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Page[JobOut]:
    before = _from_cursor(cursor) if cursor else None
    rows = await gw.db.fetch(
        f"""SELECT {jobs.JOB_COLUMNS} FROM jobs j JOIN workspaces w ON w.id = j.workspace_id
            WHERE j.workspace_id = $1 AND j.skill_name IS NOT NULL
              AND ($2::text IS NULL OR j.status = $2) AND ($3::uuid IS NULL OR j.id < $3)
            ORDER BY j.id DESC LIMIT $4""",
        who.workspace_id, status.value if status else None, before, limit + 1,
    )
    page = [jobs.job_out(r) for r in rows[:limit]]
    return Page[JobOut](data=page, next_cursor=_cursor(page[-1].id) if len(rows) > limit else None)


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, gw: GatewayDep, who: PrincipalDep) -> JobOut:
    return await job_or_404(gw, who, job_id)


@router.post("/{job_id}/cancel", response_model=JobOut, responses={202: {"model": JobOut, "description": "Running: the runner stops it"}})
async def cancel_job(job_id: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    job = await job_or_404(gw, who, job_id)
    if job.status.terminal:
        raise ApiError(ErrorCode.CONFLICT, f"job {job.id} has already {job.status.value}; there is nothing to cancel")
    request = JobCancelRequested.new(
        CancelRequestedPayload(key_id=who.key_id), producer="gateway", workspace_id=who.workspace_id, job_id=job.id
    )
    async with gw.outbox.transaction() as uow:
        uow.emit(request)
    if job.status is JobStatus.QUEUED:
        # The scheduler cancels a queued job at once; answer with the cancelled job.
        job = await wait_for_terminal(gw, job.id, who.workspace_id, timeout=5.0)
    status = 200 if job.status is JobStatus.CANCELLED else 202
    return JSONResponse(job.model_dump(mode="json"), status_code=status)
