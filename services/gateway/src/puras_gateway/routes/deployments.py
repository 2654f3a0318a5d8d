"""``/v1/deployments``: push a project bundle, list, read (status and build log), activate
(a rollback is activating an older one) and delete deployments.

The deployments service validates, stores and builds; a push or an activation returns once
this gateway's catalogue can run what it says, so the next ``POST /v1/jobs`` sees it. A push
whose requirements.txt is still building answers 202 ``building`` after ``build_wait_seconds``;
a build that fails within that time fails the push with pip's message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode
from starlette.datastructures import UploadFile

from puras_gateway import catalog
from puras_gateway.auth import GatewayDep, Principal, PrincipalDep
from puras_gateway.context import Gateway
from puras_gateway.deployments_api import (
    call,
    not_yet_visible,
    relay,
    require_secret_key,
    skillpack_ref,
    wait_catalogue,
    workspace_path,
)

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(value: str | None, *, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ApiError(
        ErrorCode.INVALID_REQUEST,
        f"field {name!r} must be true or false, not {value!r}",
        details=[{"pointer": f"/{name}", "message": "must be true or false"}],
    )


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(256 * 1024):
        yield chunk


@router.post("", status_code=201)
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
        activate = _flag(form.get("activate"), name="activate", default=True)  # type: ignore[arg-type]
        params = {
            "skillpack": skillpack_ref(who, str(form.get("skillpack") or "")),
            "notes": str(form.get("notes") or ""),
            "activate": "true" if activate else "false",
        }
        response = await call(
            gw, "POST", f"{workspace_path(who)}/deployments", params=params, content=_chunks(bundle),
            headers={"content-type": "application/zip"}, timeout=httpx.Timeout(600.0, connect=5.0),
        )
    finally:
        await form.close()
    if response.status_code >= 400:
        return relay(response)
    body = response.json()
    deployment_id = UUID(body["id"])
    if body["status"] == "building":
        body = await _wait_built(gw, who, deployment_id, body)
    if body["status"] == "ready":
        await _wait_runnable(gw, deployment_id, active=body["active"])
        return JSONResponse(body, status_code=201)
    return JSONResponse(body, status_code=202)


async def _wait_built(gw: Gateway, who: Principal, deployment_id: UUID, body: dict[str, Any]) -> dict[str, Any]:
    """Wait up to ``build_wait_seconds`` for the build; a failure becomes the push's 400."""

    async def settled(conn: Any) -> str | None:
        status = await catalog.deployment_status(conn, deployment_id)
        return status if status in ("ready", "failed") else None

    status = await wait_catalogue(gw, deployment_id, settled, timeout=gw.settings.build_wait_seconds)
    if status is None:
        return body
    latest = (await call(gw, "GET", f"{workspace_path(who)}/deployments/{deployment_id}")).json()
    if status == "failed":
        raise ApiError(
            ErrorCode.INVALID_BUNDLE,
            f"requirements.txt: {latest.get('error') or 'the build failed'}",
            details=[{
                "file": "requirements.txt", "field": None, "message": latest.get("error"),
                "deployment_id": str(deployment_id), "build_log": latest.get("build_log", ""),
            }],
        )
    return latest


async def _wait_runnable(gw: Gateway, deployment_id: UUID, *, active: bool) -> None:
    """Block until the catalogue has the ready deployment (and, if ``active``, points at it)."""

    async def visible(conn: Any) -> bool | None:
        return True if await catalog.deployment_visible(conn, deployment_id, active=active) else None

    if not await wait_catalogue(gw, deployment_id, visible, timeout=gw.settings.deployment_visible_timeout):
        raise not_yet_visible(f"deployment {deployment_id}")


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
            raise ApiError(ErrorCode.INVALID_REQUEST, f"cursor {cursor!r} is not one this endpoint gave out",
                           details=[{"pointer": "?cursor", "message": "invalid cursor"}])
        params["cursor"] = cursor
    return relay(await call(gw, "GET", f"{workspace_path(who)}/deployments", params=params))


@router.get("/{deployment_id}")
async def get_deployment(deployment_id: UUID, gw: GatewayDep, who: PrincipalDep) -> Any:
    """One deployment with its status and build log."""
    require_secret_key(who)
    return relay(await call(gw, "GET", f"{workspace_path(who)}/deployments/{deployment_id}"))


@router.post("/{deployment_id}/activate")
async def activate(deployment_id: UUID, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Make a ready deployment the active one of its skillpack; jobs already submitted keep theirs."""
    require_secret_key(who)
    response = await call(gw, "POST", f"{workspace_path(who)}/deployments/{deployment_id}/activate")
    if response.status_code == 200:
        await _wait_runnable(gw, deployment_id, active=True)
    return relay(response)


@router.delete("/{deployment_id}")
async def delete(deployment_id: UUID, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Delete a deployment that is not active (409 for the active one)."""
    require_secret_key(who)
    response = await call(gw, "DELETE", f"{workspace_path(who)}/deployments/{deployment_id}")
    if response.status_code == 200:

        async def gone(conn: Any) -> bool | None:
            return True if await catalog.deployment_deleted(conn, deployment_id) else None

        if not await wait_catalogue(gw, deployment_id, gone, timeout=gw.settings.deployment_visible_timeout):
            raise not_yet_visible(f"the deletion of deployment {deployment_id}")
    return relay(response)
