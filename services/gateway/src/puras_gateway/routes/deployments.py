"""``/v1/deployments``: push a project bundle, list, read (status and build log), activate
(a rollback is activating an older one), ramp up, promote, roll back and delete deployments.

The deployments service validates, stores and builds; a push or an activation returns once
this gateway's catalogue can run what it says, so the next ``POST /v1/jobs`` sees it. A push
whose requirements.txt is still building answers 202 ``building`` after ``build_wait_seconds``
(at once with ``wait=false``, for a client that follows the build log itself); a build that fails
within that time fails the push with pip's message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from puras_gateway import deployments_api, rollouts
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.deployments_api import (
    call,
    relay,
    require_secret_key,
    skillpack_ref,
    workspace_path,
)
from puras_gateway.openapi import optional_json_body

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(value: str | UploadFile | None, *, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.lower() in _TRUE:
        return True
    if isinstance(value, str) and value.lower() in _FALSE:
        return False
    raise ApiError(
        ErrorCode.INVALID_REQUEST,
        f"field {name!r} must be true or false, not {value!r}",
        details=[{"pointer": f"/{name}", "message": "must be true or false"}],
    )


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(256 * 1024):
        yield chunk


PUSH_FORM = {
    "type": "object",
    "required": ["bundle"],
    "properties": {
        "bundle": {"type": "string", "format": "binary", "description": "A zip of the project"},
        "skillpack": {"type": "string", "description": "Created on first push; default the key's"},
        "notes": {"type": "string"},
        "activate": {"type": "boolean", "default": True},
        "wait": {
            "type": "boolean",
            "default": True,
            "description": "false: answer 202 at once while requirements.txt builds, and "
            "follow the build log with GET /v1/deployments/{id}",
        },
    },
}


@router.post(
    "",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": PUSH_FORM}}}
    },
    responses={202: {"description": "Stored; its requirements.txt is still building"}},
)
async def push(request: Request, gw: GatewayDep, who: PrincipalDep) -> Any:
    require_secret_key(who)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "send the bundle as multipart/form-data with a 'bundle' file field (a zip of the project)",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > gw.settings.max_bundle_bytes + 64 * 1024:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"bundle upload is {int(declared)} bytes; the limit is {gw.settings.max_bundle_bytes} bytes",
        )
    form = await request.form(max_files=1, max_fields=10)
    try:
        bundle = form.get("bundle")
        if not isinstance(bundle, UploadFile):
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                "multipart field 'bundle' is missing or not a file: attach the project zip as bundle",
                details=[{"pointer": "/bundle", "message": "file required"}],
            )
        if bundle.size is not None and bundle.size > gw.settings.max_bundle_bytes:
            raise ApiError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"bundle is {bundle.size} bytes; the limit is {gw.settings.max_bundle_bytes} bytes",
            )
        activate = _flag(form.get("activate"), name="activate", default=True)
        wait_build = _flag(form.get("wait"), name="wait", default=True)
        params = {
            "skillpack": skillpack_ref(who, str(form.get("skillpack") or "")),
            "notes": str(form.get("notes") or ""),
            "activate": "true" if activate else "false",
        }
        response = await call(
            gw,
            "POST",
            f"{workspace_path(who)}/deployments",
            params=params,
            content=_chunks(bundle),
            headers={"content-type": "application/zip"},
            timeout=httpx.Timeout(600.0, connect=5.0),
        )
    finally:
        await form.close()
    if response.status_code >= 400:
        return relay(response)
    body = response.json()
    deployment_id = UUID(body["id"])
    body = await deployments_api.settle(gw, who, deployment_id, body, wait_build=wait_build)
    body.pop("activation", None)
    return JSONResponse(body, status_code=201 if body["status"] == "ready" else 202)


@router.get("")
async def list_deployments(
    gw: GatewayDep,
    who: PrincipalDep,
    skillpack: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 25,
    cursor: str | None = None,
) -> Any:
    """A skillpack's deployments, newest first, with their versions and skills."""
    require_secret_key(who)
    params: dict[str, Any] = {"skillpack": skillpack_ref(who, skillpack), "limit": limit}
    if cursor:
        if not cursor.isdigit():
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                f"cursor {cursor!r} is not one this endpoint gave out",
                details=[{"pointer": "?cursor", "message": "invalid cursor"}],
            )
        params["cursor"] = cursor
    return relay(await call(gw, "GET", f"{workspace_path(who)}/deployments", params=params))


@router.get("/{deployment_id}")
async def get_deployment(deployment_id: UUID, gw: GatewayDep, who: PrincipalDep) -> Any:
    """One deployment with its status and build log; while its skillpack ramps, the ramp with
    each version's jobs, error rate and cost."""
    require_secret_key(who)
    response = await call(gw, "GET", f"{workspace_path(who)}/deployments/{deployment_id}")
    if response.status_code != 200:
        return relay(response)
    body = response.json()
    body.pop("activation", None)
    if (ramp := body.pop("ramp", None)) is not None:
        body["rollout"] = await rollouts.ramp_stats(
            gw.db, owner_workspace_id=who.workspace_id, ramp=ramp
        )
    return body


class ActivateBody(BaseModel):
    """``POST /v1/deployments/{id}/activate`` body (optional)."""

    model_config = ConfigDict(extra="forbid")
    traffic_percent: int = Field(
        default=100,
        ge=1,
        le=100,
        description="The share of the skillpack's unpinned jobs this deployment takes; below "
        "100 it ramps up beside the active deployment, which keeps the rest",
    )


@router.post("/{deployment_id}/activate", openapi_extra=optional_json_body(ActivateBody))
async def activate(deployment_id: UUID, request: Request, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Make a ready deployment the active one of its skillpack (jobs already submitted keep
    theirs), or ramp it up to ``traffic_percent`` % of new unpinned jobs."""
    require_secret_key(who)
    raw = await read_capped(request, 4096)
    body = parse_model(ActivateBody, raw) if raw.strip() else ActivateBody()
    return await _move_traffic(
        gw, who, deployment_id, "activate", params={"traffic_percent": body.traffic_percent}
    )


@router.post("/{deployment_id}/promote")
async def promote(deployment_id: UUID, gw: GatewayDep, who: PrincipalDep) -> Any:
    """The ramping deployment takes all of its skillpack's traffic; 409 if it is not ramping."""
    require_secret_key(who)
    return await _move_traffic(gw, who, deployment_id, "promote")


@router.post("/{deployment_id}/rollback")
async def rollback(deployment_id: UUID, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Take the deployment out of traffic at once: a ramping one gives its share back to the
    active one; the active one (with no ramp) gives way to the version active before it.
    Answers with the deployment that now takes the traffic."""
    require_secret_key(who)
    return await _move_traffic(gw, who, deployment_id, "rollback")


async def _move_traffic(
    gw: GatewayDep,
    who: PrincipalDep,
    deployment_id: UUID,
    verb: str,
    *,
    params: dict[str, Any] | None = None,
) -> Any:
    response = await call(
        gw, "POST", f"{workspace_path(who)}/deployments/{deployment_id}/{verb}", params=params
    )
    if response.status_code != 200:
        return relay(response)
    body = response.json()
    await rollouts.wait_pointer(gw, UUID(body["skillpack_id"]), body.pop("activation"))
    body.pop("ramp", None)
    return body


@router.delete("/{deployment_id}")
async def delete(deployment_id: UUID, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Delete a deployment that is not active (409 for the active one)."""
    require_secret_key(who)
    response = await call(gw, "DELETE", f"{workspace_path(who)}/deployments/{deployment_id}")
    if response.status_code == 200:
        await deployments_api.wait_deleted(gw, deployment_id)
    return relay(response)
