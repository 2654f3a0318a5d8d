"""``/v1/subagents``: a running job starts a child job (``puras.subagent.run``) and waits for it.

``POST /v1/subagents`` ``{target | prompt, inputs, version}`` → 201 with the child job;
``GET /v1/subagents/{id}?wait=N`` → the child job once it ended, or as it stands after ``N``
seconds (0–60). Both take the calling job's token; a job sees only its own children.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode, JobOut
from puras_common.ids import parse_id

from puras_gateway import subagents
from puras_gateway.auth import GatewayDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.jobcalls import JobCallerDep
from puras_gateway.jobview import load_job
from puras_gateway.waiting import wait_for_terminal

router = APIRouter(prefix="/v1/subagents", tags=["subagents"])


@router.post("", status_code=201, response_model=JobOut)
async def start(request: Request, gw: GatewayDep, caller: JobCallerDep) -> Any:
    raw = await read_capped(
        request, gw.settings.max_request_bytes, hint="; pass files by drive_path"
    )
    body = parse_model(subagents.SubagentIn, raw)
    child = await subagents.submit(gw, caller, body)
    return JSONResponse(
        child.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/v1/subagents/{child.id}"},
    )


@router.get("/{job_id}", response_model=JobOut)
async def read(
    job_id: str,
    gw: GatewayDep,
    caller: JobCallerDep,
    wait: Annotated[
        int, Query(ge=0, le=60, description="Seconds to wait for the child to end")
    ] = 0,
) -> Any:
    child_id = parse_id(job_id)
    job = await load_job(gw, child_id, caller.workspace_id) if child_id else None
    if job is None or job.parent_job_id != caller.job_id:
        raise ApiError(
            ErrorCode.NOT_FOUND, f"job {job_id} is not a subagent of job {caller.job_id}"
        )
    if wait and not job.status.terminal:
        job = await wait_for_terminal(gw, job.id, caller.workspace_id, timeout=wait)
    return job
