"""The drive's internal HTTP listener (platform services only, with the internal token).

The gateway relays the public ``/v1/drive/*`` endpoints here as streams; runners and the media
and agent tools write and read workspace files here. Bytes stream in both directions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from puras_common import served
from puras_common.api import ApiError, ErrorCode
from puras_common.events import ObjectOrigin
from puras_common.http import InternalAuth, install_error_handlers
from puras_common.observability import HttpMetrics
from pydantic import BaseModel, ConfigDict, Field

from puras_drive import paths, uploads
from puras_drive.drives import Drives
from puras_drive.payloads import Payloads
from puras_drive.settings import DriveSettings
from puras_drive.signing import DEFAULT_TTL_SECONDS
from puras_drive.storage import Backend, NotFound, TooLarge
from puras_drive.uids import UidRangeExhausted, WorkspaceUids

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
    written_by: list[UUID] | None = Field(default=None, max_length=1000)
    """Sign only files these jobs wrote (and those under ``readable``)."""
    readable: str | None = Field(default=None, max_length=1024)


def _origin(job_id: UUID | None, skill: str | None, tool: str | None) -> ObjectOrigin | None:
    return ObjectOrigin(job_id=job_id, skill_name=skill, tool=tool) if job_id else None


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


def create_app(
    settings: DriveSettings, drives: Drives, backend: Backend, *, uids: WorkspaceUids | None = None
) -> FastAPI:
    async def workspace_uid(request: Request) -> None:
        """A workspace gets its uid before anything of it is touched, so every folder and
        file made for it is its uid's from the start."""
        raw = request.path_params.get("workspace_id")
        if uids is None or not raw:
            return
        try:
            workspace_id = UUID(str(raw))
        except ValueError:
            return  # the route's own validation answers
        try:
            await uids.uid_for(workspace_id)
        except UidRangeExhausted as exc:
            raise ApiError(ErrorCode.UNAVAILABLE, str(exc)) from None

    app = FastAPI(
        title="Puras drive (internal)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(workspace_uid)],
    )
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
        """How a runner gives a job this workspace's drive: a folder on this host, or not;
        and the uid the workspace's jobs run as (its folder's owner)."""
        owner = settings.file_owner()
        if owner is None and uids is not None:
            uid = await uids.uid_for(workspace_id)
            owner = (uid, uid)
        identity = {"uid": owner[0], "gid": owner[1]} if owner is not None else {}
        root = getattr(backend, "workspace_dir", None)
        if root is None:
            return {"backend": backend.name, "root": None, **identity}
        return {"backend": backend.name, "root": str(root(f"{workspace_id}/")), **identity}

    @app.post("/internal/drive/{workspace_id}/upload")
    async def upload(
        workspace_id: UUID,
        request: Request,
        _auth: InternalAuth,
        job_id: UUID | None = None,
        skill: str | None = None,
        tool: str | None = None,
        into: str | None = None,
    ) -> Any:
        """One multipart upload; with ``into`` (a publishable key's own folder) the file gets a
        generated name there and a ``path`` field is refused."""
        room = await drives.room(workspace_id, settings.max_upload_bytes)
        spool = backend.temp_path()
        try:
            try:
                received = await uploads.receive(
                    request.stream(),
                    request.headers.get("content-type"),
                    spool=spool,
                    limit=room,
                )
            except TooLarge as exc:
                raise await drives.over_quota(
                    workspace_id, exc, settings.max_upload_bytes
                ) from None
            written = await drives.store_upload(
                workspace_id, received, origin=_origin(job_id, skill, tool), into=into
            )
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
            workspace_id,
            path,
            request.stream(),
            content_type=request.headers.get("content-type"),
            limit=settings.max_write_bytes,
            origin=_origin(job_id, skill, tool),
            source="job" if source == "job" else "platform",
        )
        return JSONResponse(written.public(), status_code=201)

    @app.get("/internal/drive/{workspace_id}/object")
    async def get_object(
        workspace_id: UUID, path: str, request: Request, _auth: InternalAuth
    ) -> Any:
        return await _serve(workspace_id, path, request)

    @app.post("/internal/drive/{workspace_id}/written")
    async def written(workspace_id: UUID, body: WrittenIn, _auth: InternalAuth) -> Any:
        origin = ObjectOrigin(**body.origin.model_dump())
        recorded = await drives.record_written(workspace_id, body.paths, origin=origin)
        return {"recorded": recorded}

    @app.get("/internal/drive/{workspace_id}/quota")
    async def quota(workspace_id: UUID, _auth: InternalAuth) -> Any:
        return await drives.quota(workspace_id)

    @app.get("/internal/drive/{workspace_id}/list")
    async def listing(workspace_id: UUID, _auth: InternalAuth, prefix: str = "") -> Any:
        return await drives.listing(workspace_id, prefix)

    @app.get("/internal/drive/{workspace_id}/sign")
    async def sign(
        workspace_id: UUID, path: str, _auth: InternalAuth, ttl: int = DEFAULT_TTL_SECONDS
    ) -> Any:
        return await drives.sign(workspace_id, path, ttl=ttl)

    @app.post("/internal/drive/{workspace_id}/sign")
    async def sign_many(workspace_id: UUID, body: SignManyIn, _auth: InternalAuth) -> Any:
        links = await drives.sign_many(
            workspace_id,
            body.paths,
            ttl=body.ttl,
            written_by=body.written_by,
            readable=body.readable,
        )
        return {"signed_urls": links}

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
            headers=served.file_headers(f"{root}.zip", "application/zip"),
        )

    # -- signed links (relayed by the gateway; the signature is the credential) -------------

    @app.get("/links/{workspace_id}/{path:path}")
    async def signed_file(
        workspace_id: UUID,
        path: str,
        request: Request,
        exp: Annotated[str | None, Query()] = None,
        kid: Annotated[str | None, Query()] = None,
        sig: Annotated[str | None, Query()] = None,
    ) -> Any:
        """A signed link, served on the link's own signature and nothing else: this route takes
        no internal token, so a relayed link can never open more than it was signed for. The
        path must be the very one signed (normalised), not merely one that normalises to it."""
        try:
            target = paths.resolve(workspace_id, path)
        except paths.InvalidPath:
            target = None
        if target is None or target.path != path:
            raise NotFound(path)
        drives.signer.verify(workspace_id, target.path, exp=exp, kid=kid, sig=sig)
        return await _serve(workspace_id, target.path, request)

    async def _serve(workspace_id: UUID, path: str, request: Request) -> Response:
        target, stored, content_type = await drives.stat(workspace_id, path)
        span = _range(request.headers.get("range"), stored.bytes)
        headers = {
            "Accept-Ranges": "bytes",
            "Last-Modified": stored.updated_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
            **served.file_headers(target.name, content_type),
        }
        if span is None:
            headers["Content-Length"] = str(stored.bytes)
            return StreamingResponse(
                backend.read(target.key), media_type=content_type, headers=headers
            )
        start, end = span
        headers["Content-Length"] = str(end - start)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.bytes}"
        return StreamingResponse(
            backend.read(target.key, start=start, end=end),
            status_code=206,
            media_type=content_type,
            headers=headers,
        )

    app.add_middleware(served.InertResponses)
    app.add_middleware(HttpMetrics, service="drive")
    return app
