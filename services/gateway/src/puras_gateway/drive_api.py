"""The drive service's internal listener as the gateway calls it for a caller: uploads and
downloads are relayed as streams, so no request or response body is ever held whole in the
gateway's memory, and an upload is counted as it passes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote
from uuid import UUID

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from puras_common import served
from puras_common.api import ApiError, ErrorCode
from puras_common.ids import parse_id
from starlette.background import BackgroundTask

from puras_gateway import keys
from puras_gateway.callers import Caller
from puras_gateway.context import Gateway

MULTIPART_SLACK_BYTES = 1024 * 1024
"""Room for the form's boundaries, headers and ``path`` field on top of the file itself; the
drive counts the file's own bytes exactly."""

_PASSED_HEADERS = (
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "content-disposition",
    "last-modified",
)
_UPSTREAM_TIMEOUT = httpx.Timeout(600.0, connect=5.0)


class _TooLarge(Exception):
    """The relayed body passed the gateway's cap; the client is told 413."""


def endpoint(gw: Gateway, caller: Caller, verb: str) -> str:
    """The drive's internal URL for ``verb`` on the caller's workspace."""
    return f"{gw.settings.drive_url}/internal/drive/{caller.workspace_id}/{verb}"


def _unavailable(exc: httpx.TransportError) -> ApiError:
    return ApiError(
        ErrorCode.UNAVAILABLE, f"the drive service is unreachable: {type(exc).__name__}"
    )


async def relay_json(gw: Gateway, method: str, url: str, **kwargs: Any) -> JSONResponse:
    """One request to the drive; its JSON answer, status and all, is the client's."""
    try:
        response = await gw.http.request(method, url, headers=gw.internal_headers, **kwargs)
    except httpx.TransportError as exc:
        raise _unavailable(exc) from None
    return JSONResponse(response.json(), status_code=response.status_code)


async def relay_stream(
    gw: Gateway,
    url: str,
    *,
    params: dict[str, str] | None = None,
    range_: str | None = None,
    credentials: bool = True,
) -> Response:
    """Relay a GET from the drive as a stream (errors come back as the drive's JSON); the file
    is served inert (:func:`puras_common.served.enforce`), whatever the drive said. Without
    ``credentials`` the request carries no internal token."""
    headers = dict(gw.internal_headers) if credentials else {}
    if range_:
        headers["range"] = range_
    request = gw.http.build_request(
        "GET", url, params=params, headers=headers, timeout=_UPSTREAM_TIMEOUT
    )
    try:
        upstream = await gw.http.send(request, stream=True)
    except httpx.TransportError as exc:
        raise _unavailable(exc) from None
    if upstream.status_code >= 400:
        body = await upstream.aread()
        await upstream.aclose()
        return Response(body, status_code=upstream.status_code, media_type="application/json")
    passed = served.enforce(
        {k: v for k, v in upstream.headers.items() if k.lower() in _PASSED_HEADERS}
    )
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=passed,
        background=BackgroundTask(upstream.aclose),
    )


_ENCODED_SEPARATORS: Final = re.compile(rb"%(?:2[eEfF]|5[cC]|00|25)")
"""``%2e`` ``%2f`` ``%5c`` ``%00`` ``%25`` in a link's raw path: a link the drive signed never
holds them (it encodes neither dots nor slashes), and each is a way to smuggle a dot segment
or a separator past a layer that decodes once more."""
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class Link:
    """A signed link's address, parsed: the workspace it names and its canonical path."""

    workspace_id: UUID
    path: str


def parse_link(request: Request, workspace_id: str, path: str) -> Link:
    """The workspace id and path of ``/v1/drive/files/<workspace_id>/<path>``, or 404 for
    anything a signed link cannot be: an id that is not a canonical UUID, dot or empty
    segments, backslashes, control characters, or encoded dots and separators. Refused before
    anything is relayed, with one answer whatever the reason."""
    raw = request.scope.get("raw_path") or b""
    parsed = parse_id(workspace_id)
    segments = path.split("/")
    if (
        _ENCODED_SEPARATORS.search(raw)
        or parsed is None
        or str(parsed) != workspace_id
        or any(s in ("", ".", "..") for s in segments)
        or _CONTROL.search(path)
    ):
        raise ApiError(ErrorCode.NOT_FOUND, "no file at this link")
    return Link(parsed, path)


async def relay_link(
    gw: Gateway, link: Link, *, params: dict[str, str], range_: str | None
) -> Response:
    """Relay a signed link to the drive's link route, carrying the link's own signature and
    nothing else: no internal token, so the drive serves only what the signature covers."""
    url = f"{gw.settings.drive_url}/links/{link.workspace_id}/{quote(link.path, safe='/')}"
    return await relay_stream(gw, url, params=params, range_=range_, credentials=False)


async def upload(gw: Gateway, who: Caller, request: Request) -> JSONResponse:
    """Relay one multipart upload; 413 as soon as it passes the limit (declared or counted)."""
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
    if who.key_kind == "publishable" and who.key_id is not None:
        params["into"] = keys.publishable_folder(who.key_id)
    try:
        response = await gw.http.post(
            endpoint(gw, who, "upload"),
            content=body(),
            params=params,
            headers={
                **gw.internal_headers,
                "content-type": request.headers.get("content-type", ""),
            },
            timeout=_UPSTREAM_TIMEOUT,
        )
    except _TooLarge:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"file exceeds the limit of {limit} bytes ({limit // (1024 * 1024)} MiB)",
        ) from None
    except httpx.TransportError as exc:
        raise _unavailable(exc) from None
    return JSONResponse(response.json(), status_code=response.status_code)
