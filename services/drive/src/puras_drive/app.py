"""The drive's internal HTTP listener (platform services only, with the internal token).

The gateway relays the public ``/v1/drive/*`` endpoints here as streams; runners and the media
and agent tools write and read workspace files here. Bytes stream in both directions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from puras_common.events import ObjectOrigin
from puras_common.http import InternalAuth, install_error_handlers
from pydantic import BaseModel, ConfigDict, Field

from puras_drive import paths, uploads
from puras_drive.payloads import Payloads
from puras_drive.settings import DriveSettings
from puras_drive.signing import DEFAULT_TTL_SECONDS
from puras_drive.storage import Backend
from puras_drive.workspaces import Drives

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class OriginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: UUID
    skill_name: str | None = Field(default=None, max_length=300)
    tool: str | None = Field(default=None, max_length=100)


class WrittenIn(BaseModel):
    """Files a job wrote in place, to record with their origin."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(max_length=10_000)
    origin: OriginIn


class SignManyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(max_length=1000)
    ttl: int = DEFAULT_TTL_SECONDS


def _origin(job_id: UUID | None, skill: str | None, tool: str | None) -> ObjectOrigin | None:
    return ObjectOrigin(job_id=job_id, skill_name=skill, tool=tool) if job_id else None


def _content_disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` of a single ``bytes=`` range; ``None`` (the whole file) for anything else,
    which RFC 9110 allows a server to answer with the full content."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), size if last == "" else min(size, int(last) + 1)
    if start >= size or start >= end:
        return None
    return start, end


def create_app(settings: DriveSettings, drives: Drives, backend: Backend) -> FastAPI:
    app = FastAPI(title="Puras drive (internal)", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.state.internal_token = settings.internal_token.get_secret_value()
    payloads = Payloads(backend)

    # -- payload objects -------------------------------------------------------------------

    @app.put("/internal/payloads/{key:path}")
    async def put_payload(key: str, request: Request, _auth: InternalAuth) -> Any:
        size = await payloads.write(key, request.stream(), limit=settings.max_payload_bytes)
        return JSONResponse({"key": key, "bytes": size}, status_code=201)

    @app.get("/internal/payloads/{key:path}")
    async def get_payload(key: str, _auth: InternalAuth) -> Any:
        return StreamingResponse(await payloads.read(key), media_type="application/json")

    # -- workspace files -------------------------------------------------------------------

    @app.get("/internal/drive/{workspace_id}/mount")
    async def mount(workspace_id: UUID, _auth: InternalAuth) -> Any:
        """How a runner gives a job this workspace's drive: a folder on this host, or not."""
        root = getattr(backend, "workspace_dir", None)
        if root is None:
            return {"backend": backend.name, "root": None}
        return {"backend": backend.name, "root": str(root(f"{workspace_id}/"))}

    @app.post("/internal/drive/{workspace_id}/upload")
    async def upload(
        workspace_id: UUID,
        request: Request,
        _auth: InternalAuth,
        job_id: UUID | None = None,
        skill: str | None = None,
        tool: str | None = None,
    ) -> Any:
        spool = backend.temp_path()
        try:
            received = await uploads.receive(
                request.stream(), request.headers.get("content-type"), spool=spool, limit=settings.max_upload_bytes
            )
            written = await drives.store_upload(workspace_id, received, origin=_origin(job_id, skill, tool))
        finally:
            spool.unlink(missing_ok=True)  # a refused path or a failed store leaves no spool behind
        return JSONResponse(written.public(), status_code=201)

    @app.put("/internal/drive/{workspace_id}/object")
    async def put_object(
        workspace_id: UUID,
        request: Request,
        _auth: InternalAuth,
        path: str,
        job_id: UUID | None = None,
        skill: str | None = None,
        tool: str | None = None,
        source: str = "platform",
    ) -> Any:
        written = await drives.write(
            workspace_id, path, request.stream(),
            content_type=request.headers.get("content-type"), limit=settings.max_write_bytes,
            origin=_origin(job_id, skill, tool), source="job" if source == "job" else "platform",
        )
        return JSONResponse(written.public(), status_code=201)

    @app.get("/internal/drive/{workspace_id}/object")
    async def get_object(workspace_id: UUID, path: str, request: Request, _auth: InternalAuth) -> Any:
        return await _serve(workspace_id, path, request)

    @app.post("/internal/drive/{workspace_id}/written")
    async def written(workspace_id: UUID, body: WrittenIn, _auth: InternalAuth) -> Any:
        origin = ObjectOrigin(**body.origin.model_dump())
        recorded = await drives.record_written(workspace_id, body.paths, origin=origin)
        return {"recorded": recorded}

    @app.get("/internal/drive/{workspace_id}/list")
    async def listing(workspace_id: UUID, _auth: InternalAuth, prefix: str = "") -> Any:
        return await drives.listing(workspace_id, prefix)

    @app.get("/internal/drive/{workspace_id}/sign")
    async def sign(workspace_id: UUID, path: str, _auth: InternalAuth, ttl: int = DEFAULT_TTL_SECONDS) -> Any:
        return await drives.sign(workspace_id, path, ttl=ttl)

    @app.post("/internal/drive/{workspace_id}/sign")
    async def sign_many(workspace_id: UUID, body: SignManyIn, _auth: InternalAuth) -> Any:
        return {"signed_urls": drives.sign_many(workspace_id, body.paths, ttl=body.ttl)}

    @app.post("/internal/drive/{workspace_id}/share")
    async def share(workspace_id: UUID, path: str, _auth: InternalAuth) -> Any:
        return await drives.share(workspace_id, path)

    @app.delete("/internal/drive/{workspace_id}/object")
    async def delete(workspace_id: UUID, path: str, _auth: InternalAuth) -> Any:
        return {"deleted": await drives.delete(workspace_id, path)}

    @app.get("/internal/drive/{workspace_id}/origin")
    async def origin(workspace_id: UUID, path: str, _auth: InternalAuth) -> Any:
        return (await drives.origin(workspace_id, path)).public()

    @app.get("/internal/drive/{workspace_id}/zip")
    async def zip_prefix(workspace_id: UUID, _auth: InternalAuth, prefix: str = "") -> Any:
        root, stream = drives.zip(workspace_id, prefix)
        return StreamingResponse(
            stream,
            media_type="application/zip",
            headers={"Content-Disposition": _content_disposition(f"{root}.zip").replace("inline", "attachment")},
        )

    # -- signed links (relayed by the gateway; the signature is the credential) -------------

    @app.get("/internal/files/{workspace_id}/{path:path}")
    async def signed_file(
        workspace_id: UUID,
        path: str,
        request: Request,
        _auth: InternalAuth,
        exp: Annotated[str | None, Query()] = None,
        kid: Annotated[str | None, Query()] = None,
        sig: Annotated[str | None, Query()] = None,
    ) -> Any:
        try:
            target = paths.resolve(workspace_id, path)
        except paths.InvalidPath:
            drives.signer.verify(workspace_id, path, exp=exp, kid=kid, sig=sig)
            raise
        drives.signer.verify(workspace_id, target.path, exp=exp, kid=kid, sig=sig)
        return await _serve(workspace_id, target.path, request)

    async def _serve(workspace_id: UUID, path: str, request: Request) -> Response:
        target, stored, content_type = await drives.stat(workspace_id, path)
        span = _range(request.headers.get("range"), stored.bytes)
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Disposition": _content_disposition(target.name),
            "Last-Modified": stored.updated_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "X-Content-Type-Options": "nosniff",
        }
        if span is None:
            headers["Content-Length"] = str(stored.bytes)
            return StreamingResponse(backend.read(target.key), media_type=content_type, headers=headers)
        start, end = span
        headers["Content-Length"] = str(end - start)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.bytes}"
        return StreamingResponse(
            backend.read(target.key, start=start, end=end), status_code=206, media_type=content_type, headers=headers
        )

    return app
