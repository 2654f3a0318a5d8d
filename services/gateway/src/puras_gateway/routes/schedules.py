"""``/v1/schedules``: run a skill with fixed inputs at every fire time of a cron expression.

Create, list, read, change (pause and resume among it) and delete a workspace's schedules, and
list the jobs one started. Every job a schedule starts names it (``schedule_id``,
``scheduled_for``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from puras_common.api import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, ApiError, ErrorCode, JobOut, Page
from puras_common.ids import parse_id
from pydantic import BaseModel

from puras_gateway import jobs, schedules
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.bodies import check_limit, parse_model, read_capped
from puras_gateway.deployments_api import require_secret_key
from puras_gateway.jobview import read_model_holds_shown
from puras_gateway.openapi import ERRORS
from puras_gateway.requests import ScheduleIn, ScheduleUpdate

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=ERRORS)

MAX_BODY_BYTES = 128 * 1024


class LastFire(BaseModel):
    fire_at: datetime
    job_id: UUID | None
    """None when the job could not be submitted (``error`` says why)."""
    error: str | None


class ScheduleOut(BaseModel):
    """A schedule as the API shows it."""

    id: UUID
    name: str
    skill: str
    skillpack: str | None
    inputs: dict[str, Any]
    cron: str
    timezone: str
    missed: Literal["skip", "catch_up"]
    catch_up_limit: int
    paused: bool
    source: Literal["api", "deployment"]
    """``deployment``: declared in skill.yaml, following the skillpack's active deployment."""
    deployment_id: UUID | None
    next_fire_times: list[datetime]
    """The next five fire times (none while paused)."""
    fires: int
    """Jobs started so far."""
    last_fire: LastFire | None
    created_at: datetime
    updated_at: datetime


def _cursor(value: str | None) -> UUID | None:
    if value is None:
        return None
    parsed = parse_id(value)
    if parsed is None:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"cursor {value!r} is not one this API returned",
            details=[{"pointer": "?cursor", "message": "unknown cursor"}],
        )
    return parsed


@router.post(
    "",
    status_code=201,
    response_model=ScheduleOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ScheduleIn.model_json_schema()}},
        }
    },
)
async def create_schedule(request: Request, gw: GatewayDep, who: PrincipalDep) -> Any:
    require_secret_key(who)
    body = parse_model(ScheduleIn, await read_capped(request, MAX_BODY_BYTES))
    shown = await schedules.create(gw, who, body)
    return JSONResponse(
        shown, status_code=201, headers={"Location": f"/v1/schedules/{shown['id']}"}
    )


@router.get("", response_model=Page[ScheduleOut])
async def list_schedules(
    gw: GatewayDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(description=f"1–{MAX_PAGE_LIMIT}")] = DEFAULT_PAGE_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Any:
    require_secret_key(who)
    check_limit(limit)
    data, more = await schedules.page(gw, who, before=_cursor(cursor), limit=limit)
    return {"data": data, "next_cursor": str(more) if more else None}


@router.get("/{schedule_id}", response_model=ScheduleOut)
async def get_schedule(schedule_id: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    require_secret_key(who)
    return await schedules.get(gw, who, schedule_id)


@router.patch(
    "/{schedule_id}",
    response_model=ScheduleOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ScheduleUpdate.model_json_schema()}},
        }
    },
)
async def update_schedule(
    schedule_id: str, request: Request, gw: GatewayDep, who: PrincipalDep
) -> Any:
    """Change a schedule; ``{"paused": true}`` pauses it and ``{"paused": false}`` resumes it
    (fire times that passed while it was paused are not fired)."""
    require_secret_key(who)
    body = parse_model(ScheduleUpdate, await read_capped(request, MAX_BODY_BYTES))
    return await schedules.update(gw, who, schedule_id, body)


@router.delete("/{schedule_id}")
async def delete_schedule(schedule_id: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    require_secret_key(who)
    return await schedules.delete(gw, who, schedule_id)


@router.get("/{schedule_id}/jobs", response_model=Page[JobOut])
async def schedule_jobs(
    schedule_id: str,
    gw: GatewayDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(description=f"1–{MAX_PAGE_LIMIT}")] = DEFAULT_PAGE_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Any:
    """The jobs a schedule started, newest first."""
    require_secret_key(who)
    check_limit(limit)
    shown = await schedules.get(gw, who, schedule_id)
    await read_model_holds_shown(gw, who.workspace_id)
    rows = await jobs.page_of_schedule(
        gw.db, who.workspace_id, UUID(shown["id"]), before=_cursor(cursor), limit=limit + 1
    )
    page = [jobs.job_out(r) for r in rows[:limit]]
    return Page[JobOut](data=page, next_cursor=str(page[-1].id) if len(rows) > limit else None)
