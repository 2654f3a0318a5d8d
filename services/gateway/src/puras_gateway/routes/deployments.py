"""``/v1/deployments``: push a project bundle. The deployments service validates and stores it;
the push returns once this gateway's catalogue can run it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode
from puras_common.ids import parse_id
from starlette.datastructures import UploadFile

from puras_gateway import catalog
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.context import Gateway
from puras_gateway.notify import CATALOG_CHANNEL

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
    raise ApiError(ErrorCode.INVALID_REQUEST, f"field {name!r} must be true or false, not {value!r}")


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(256 * 1024):
        yield chunk


@router.post("", status_code=201)
async def push(request: Request, gw: GatewayDep, who: PrincipalDep) -> Any:
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
        skillpack = str(form.get("skillpack") or who.skillpack)
        notes = str(form.get("notes") or "")
        activate = _flag(form.get("activate"), name="activate", default=True)  # type: ignore[arg-type]
        params = {
            "workspace_id": str(who.workspace_id),
            "skillpack": skillpack,
            "notes": notes,
            "activate": "true" if activate else "false",
        }
        try:
            response = await gw.http.post(
                f"{gw.settings.deployments_url}/internal/deployments",
                params=params,
                content=_chunks(bundle),
                headers={**gw.internal_headers, "content-type": "application/zip"},
                timeout=httpx.Timeout(600.0, connect=5.0),
            )
        except httpx.TransportError as exc:
            raise ApiError(ErrorCode.UNAVAILABLE, f"deployments service unreachable: {exc}") from None
    finally:
        await form.close()
    body = response.json()
    if response.status_code >= 400:
        return JSONResponse(body, status_code=response.status_code)
    deployment_id = parse_id(body["id"])
    assert deployment_id is not None
    if body.get("status") == "ready":
        await _wait_visible(gw, deployment_id, active=activate)
    return JSONResponse(body, status_code=response.status_code)


async def _wait_visible(gw: Gateway, deployment_id: Any, *, active: bool) -> None:
    """Block until the catalogue read model has the deployment (and its activation)."""

    async def visible() -> bool | None:
        async with gw.db.acquire() as conn:
            return True if await catalog.deployment_visible(conn, deployment_id, active=active) else None

    if not await gw.notifier.wait_until(
        CATALOG_CHANNEL, str(deployment_id), visible, timeout=gw.settings.deployment_visible_timeout
    ):
        raise ApiError(
            ErrorCode.UNAVAILABLE,
            f"deployment {deployment_id} was stored but is not yet visible to the gateway; retry shortly",
        )
