"""``/v1/drive``: a workspace's files. Upload, list, sign, share, delete, zip, origin, and the
signed links themselves.

The drive service owns storage and signing; these routes authenticate the caller (an API key,
or a job's token for in-skill SDK calls), then relay to the drive's internal listener as
streams, so no request or response body is ever held whole in the gateway's memory.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from puras_common.api import ApiError, ErrorCode

from puras_gateway import drive_api
from puras_gateway.auth import GatewayDep
from puras_gateway.callers import Caller, CallerDep

router = APIRouter(prefix="/v1/drive", tags=["drive"])


def _only_secret_keys(caller: Caller, what: str) -> None:
    if caller.key_kind == "publishable":
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"a publishable key may upload files but not {what}; use a secret key",
        )


@router.post("/upload", status_code=201)
async def upload(request: Request, gw: GatewayDep, who: CallerDep) -> Any:
    """Store one file (multipart ``file``, optional ``path``); 50 MB at most, counted as it streams."""
    return await drive_api.upload(gw, who, request)


@router.get("/list")
async def list_folder(gw: GatewayDep, who: CallerDep, prefix: str = "") -> Any:
    """Direct children of a folder: ``{prefix, folders, files: [{name, path, bytes, content_type, updated_at}]}``."""
    _only_secret_keys(who, "list them")
    return await drive_api.relay_json(
        gw, "GET", drive_api.endpoint(gw, who, "list"), params={"prefix": prefix}
    )


@router.get("/sign")
async def sign(
    gw: GatewayDep,
    who: CallerDep,
    path: str,
    ttl: Annotated[
        int, Query(description="Seconds the link lives: 30 to 2,592,000 (30 days)")
    ] = 3600,
) -> Any:
    """A signed link to one file: ``{path, signed_url, expires_in}``."""
    _only_secret_keys(who, "sign links")
    return await drive_api.relay_json(
        gw, "GET", drive_api.endpoint(gw, who, "sign"), params={"path": path, "ttl": str(ttl)}
    )


@router.post("/share")
async def share(gw: GatewayDep, who: CallerDep, path: str) -> Any:
    """A ten-year link, revoked only by rotating the signing key: ``{url, expires_at}``."""
    _only_secret_keys(who, "share them")
    return await drive_api.relay_json(
        gw, "POST", drive_api.endpoint(gw, who, "share"), params={"path": path}
    )


@router.delete("/object")
async def delete(gw: GatewayDep, who: CallerDep, path: str) -> Any:
    """Delete a file, or a folder's every file (trailing ``/`` or a name without extension): ``{deleted}``."""
    _only_secret_keys(who, "delete them")
    return await drive_api.relay_json(
        gw, "DELETE", drive_api.endpoint(gw, who, "object"), params={"path": path}
    )


@router.get("/origin")
async def origin(gw: GatewayDep, who: CallerDep, path: str) -> Any:
    """Which job wrote a file: ``{job_id, skill_name, tool, created_at}``, all null for uploads."""
    _only_secret_keys(who, "look up their origin")
    return await drive_api.relay_json(
        gw, "GET", drive_api.endpoint(gw, who, "origin"), params={"path": path}
    )


@router.get("/quota")
async def quota(gw: GatewayDep, who: CallerDep) -> Any:
    """How much the workspace's drive holds against its quota: ``{used_bytes, limit_bytes,
    files}`` (``limit_bytes`` null when the platform sets none)."""
    _only_secret_keys(who, "read the drive's quota")
    return await drive_api.relay_json(gw, "GET", drive_api.endpoint(gw, who, "quota"))


@router.get("/zip")
async def zip_folder(gw: GatewayDep, who: CallerDep, prefix: str = "") -> Any:
    """Every file under ``prefix`` as one zip, streamed; its root folder is the prefix's last name."""
    _only_secret_keys(who, "download them")
    return await drive_api.relay_stream(
        gw, drive_api.endpoint(gw, who, "zip"), params={"prefix": prefix}
    )


@router.get("/files/{workspace_id}/{path:path}", include_in_schema=False)
async def signed_file(
    workspace_id: str,
    path: str,
    request: Request,
    gw: GatewayDep,
    exp: str | None = None,
    kid: str | None = None,
    sig: str | None = None,
) -> Any:
    """A signed link: the signature is the credential, checked by the drive in constant time.
    The address is parsed first (404 for anything a signed link cannot be), and the relay
    carries only the link's signature."""
    link = drive_api.parse_link(request, workspace_id, path)
    params = {k: v for k, v in {"exp": exp, "kid": kid, "sig": sig}.items() if v is not None}
    return await drive_api.relay_link(gw, link, params=params, range_=request.headers.get("range"))
