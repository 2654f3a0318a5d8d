"""``/v1/drive``: a workspace's files. Upload, list, sign, share, delete, zip, origin, and the
signed links themselves.

The drive service owns storage and signing; these routes authenticate the caller (an API key,
or a job's token for in-skill SDK calls), then relay to the drive's internal listener as
streams, so no request or response body is ever held whole in the gateway's memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from puras_common.api import ApiError, ErrorCode
from starlette.background import BackgroundTask

from puras_gateway.auth import GatewayDep
from puras_gateway.callers import Caller, CallerDep
from puras_gateway.context import Gateway

router = APIRouter(prefix="/v1/drive", tags=["drive"])

MULTIPART_SLACK_BYTES = 1024 * 1024
"""Room for the form's boundaries, headers and ``path`` field on top of the file itself; the
drive counts the file's own bytes exactly."""

_PASSED_HEADERS = (
    "content-type", "content-length", "content-range", "accept-ranges", "content-disposition",
    "last-modified", "x-content-type-options",
)
_UPSTREAM_TIMEOUT = httpx.Timeout(600.0, connect=5.0)


class _TooLarge(Exception):
    """The relayed body passed the gateway's cap; the client is told 413."""


def _url(gw: Gateway, caller: Caller, verb: str) -> str:
    return f"{gw.settings.drive_url}/internal/drive/{caller.workspace_id}/{verb}"


def _only_secret_keys(caller: Caller, what: str) -> None:
    if caller.key_kind == "publishable":
        raise ApiError(ErrorCode.FORBIDDEN, f"a publishable key may upload files but not {what}; use a secret key")


def _unavailable(exc: httpx.TransportError) -> ApiError:
    return ApiError(ErrorCode.UNAVAILABLE, f"the drive service is unreachable: {type(exc).__name__}")


async def _json(gw: Gateway, method: str, url: str, **kwargs: Any) -> JSONResponse:
    try:
        response = await gw.http.request(method, url, headers=gw.internal_headers, **kwargs)
    except httpx.TransportError as exc:
        raise _unavailable(exc) from None
    return JSONResponse(response.json(), status_code=response.status_code)


async def _stream(gw: Gateway, url: str, *, params: dict[str, str] | None = None, range_: str | None = None) -> Response:
    """Relay a GET from the drive as a stream (errors come back as the drive's JSON)."""
    headers = dict(gw.internal_headers)
    if range_:
        headers["range"] = range_
    request = gw.http.build_request("GET", url, params=params, headers=headers, timeout=_UPSTREAM_TIMEOUT)
    try:
        upstream = await gw.http.send(request, stream=True)
    except httpx.TransportError as exc:
        raise _unavailable(exc) from None
    if upstream.status_code >= 400:
        body = await upstream.aread()
        await upstream.aclose()
        return Response(body, status_code=upstream.status_code, media_type="application/json")
    passed = {k: v for k, v in upstream.headers.items() if k.lower() in _PASSED_HEADERS}
    return StreamingResponse(
        upstream.aiter_raw(), status_code=upstream.status_code, headers=passed, background=BackgroundTask(upstream.aclose)
    )


@router.post("/upload", status_code=201)
async def upload(request: Request, gw: GatewayDep, who: CallerDep) -> Any:
    """Store one file (multipart ``file``, optional ``path``); 50 MB at most, counted as it streams."""
    limit = gw.settings.max_upload_bytes
    cap = limit + MULTIPART_SLACK_BYTES
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"upload is {int(declared)} bytes; a file may be at most {limit} bytes ({limit // (1024 * 1024)} MiB)",
        )

    async def body() -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > cap:
                raise _TooLarge
            yield chunk

    params = {k: str(v) for k, v in {"job_id": who.job_id, "skill": who.skill_name}.items() if v}
    try:
        response = await gw.http.post(
            _url(gw, who, "upload"),
            content=body(),
            params=params,
            headers={**gw.internal_headers, "content-type": request.headers.get("content-type", "")},
            timeout=_UPSTREAM_TIMEOUT,
        )
    except _TooLarge:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"file exceeds the limit of {limit} bytes ({limit // (1024 * 1024)} MiB)"
        ) from None
    except httpx.TransportError as exc:
        raise _unavailable(exc) from None
    return JSONResponse(response.json(), status_code=response.status_code)


@router.get("/list")
async def list_folder(gw: GatewayDep, who: CallerDep, prefix: str = "") -> Any:
    """Direct children of a folder: ``{prefix, folders, files: [{name, path, bytes, content_type, updated_at}]}``."""
    _only_secret_keys(who, "list them")
    return await _json(gw, "GET", _url(gw, who, "list"), params={"prefix": prefix})


@router.get("/sign")
async def sign(
    gw: GatewayDep,
    who: CallerDep,
    path: str,
    ttl: Annotated[int, Query(description="Seconds the link lives: 30 to 2,592,000 (30 days)")] = 3600,
) -> Any:
    """A signed link to one file: ``{path, signed_url, expires_in}``."""
    _only_secret_keys(who, "sign links")
    return await _json(gw, "GET", _url(gw, who, "sign"), params={"path": path, "ttl": str(ttl)})


@router.post("/share")
async def share(gw: GatewayDep, who: CallerDep, path: str) -> Any:
    """A ten-year link, revoked only by rotating the signing key: ``{url, expires_at}``."""
    _only_secret_keys(who, "share them")
    return await _json(gw, "POST", _url(gw, who, "share"), params={"path": path})


@router.delete("/object")
async def delete(gw: GatewayDep, who: CallerDep, path: str) -> Any:
    """Delete a file, or a folder's every file (trailing ``/`` or a name without extension): ``{deleted}``."""
    _only_secret_keys(who, "delete them")
    return await _json(gw, "DELETE", _url(gw, who, "object"), params={"path": path})


@router.get("/origin")
async def origin(gw: GatewayDep, who: CallerDep, path: str) -> Any:
    """Which job wrote a file: ``{job_id, skill_name, tool, created_at}``, all null for uploads."""
    _only_secret_keys(who, "look up their origin")
    return await _json(gw, "GET", _url(gw, who, "origin"), params={"path": path})


@router.get("/zip")
async def zip_folder(gw: GatewayDep, who: CallerDep, prefix: str = "") -> Any:
    """Every file under ``prefix`` as one zip, streamed; its root folder is the prefix's last name."""
    _only_secret_keys(who, "download them")
    return await _stream(gw, _url(gw, who, "zip"), params={"prefix": prefix})


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
    """A signed link: the signature is the credential, checked by the drive in constant time."""
    url = f"{gw.settings.drive_url}/internal/files/{quote(workspace_id, safe='')}/{quote(path, safe='/')}"
    params = {k: v for k, v in {"exp": exp, "kid": kid, "sig": sig}.items() if v is not None}
    return await _stream(gw, url, params=params, range_=request.headers.get("range"))
