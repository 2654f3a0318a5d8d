"""A workspace's drive: files under ``<workspace_id>/`` in the backend, their metadata and
origin, and signed links to them. Every operation takes a caller's raw path and checks it
(:mod:`puras_drive.paths`) before storage sees it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from puras_common.api import ApiError, ErrorCode, ErrorDetail
from puras_common.events import ObjectOrigin

from puras_drive import objects, paths
from puras_drive.objects import Metadata, Origin
from puras_drive.paths import DrivePath
from puras_drive.signing import (
    DEFAULT_TTL_SECONDS,
    SHARE_TTL_SECONDS,
    SignedLink,
    Signer,
    check_ttl,
)
from puras_drive.storage import (
    DEFAULT_CONTENT_TYPE,
    Backend,
    NotFound,
    QuotaExceeded,
    StoredObject,
    TooLarge,
    guess_content_type,
)
from puras_drive.uploads import Upload
from puras_drive.zipstream import stream_zip


@dataclass(frozen=True)
class Written:
    """A file just stored, as the upload endpoint answers."""

    path: DrivePath
    bytes: int
    content_type: str
    signed_url: str

    def public(self) -> dict[str, Any]:
        return {
            "drive_path": self.path.path,
            "full_path": self.path.key,
            "signed_url": self.signed_url,
            "bytes": self.bytes,
            "content_type": self.content_type,
        }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Drives:
    """Every workspace's drive on one backend."""

    def __init__(
        self,
        backend: Backend,
        metadata: Metadata,
        signer: Signer,
        *,
        quota_bytes: int | None = None,
    ) -> None:
        self.backend = backend
        self.metadata = metadata
        self.signer = signer
        self.quota_bytes = quota_bytes
        """What one workspace may hold; None for no quota."""

    # -- quota -----------------------------------------------------------------------------

    async def quota(self, workspace_id: UUID) -> dict[str, Any]:
        """``{used_bytes, limit_bytes, files}`` of a workspace's drive (``limit_bytes`` null
        when there is no quota)."""
        used, files = await self.metadata.usage(workspace_id)
        return {"used_bytes": used, "limit_bytes": self.quota_bytes, "files": files}

    async def room(self, workspace_id: UUID, limit: int) -> int:
        """The most the next write may store: ``limit``, or less where the quota leaves less;
        507 when the quota is used up. Checked as a write starts, so writes running at once
        may pass the quota by at most their own sizes."""
        if self.quota_bytes is None:
            return limit
        used, _ = await self.metadata.usage(workspace_id)
        if used >= self.quota_bytes:
            raise QuotaExceeded(used=used, quota=self.quota_bytes)
        return min(limit, self.quota_bytes - used)

    async def over_quota(self, workspace_id: UUID, exc: TooLarge, limit: int) -> ApiError:
        """What a write that passed ``room``'s answer means: over the quota, or too large."""
        if self.quota_bytes is None or exc.limit >= limit:
            return exc
        used, _ = await self.metadata.usage(workspace_id)
        return QuotaExceeded(used=used, quota=self.quota_bytes, incoming=exc.limit + 1)

    # -- writing ---------------------------------------------------------------------------

    async def _record_written(
        self,
        target: DrivePath,
        stored: StoredObject,
        content_type: str,
        origin: ObjectOrigin | None,
        source: str,
    ) -> None:
        event = objects.written_event(
            target.workspace_id,
            target.path,
            size=stored.bytes,
            content_type=content_type,
            written_at=datetime.now(UTC),
            origin=origin,
            source=source,
        )
        await self.metadata.record([event])

    async def write(
        self,
        workspace_id: UUID,
        raw_path: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str | None,
        limit: int,
        origin: ObjectOrigin | None = None,
        source: str = "platform",
    ) -> Written:
        """Store a stream at a caller's path (the agent's download_url, media outputs…)."""
        target = paths.resolve(workspace_id, raw_path)
        kind = _content_type(content_type, target.path)
        room = await self.room(workspace_id, limit)
        try:
            stored = await self.backend.write(target.key, chunks, content_type=kind, limit=room)
        except TooLarge as exc:
            raise await self.over_quota(workspace_id, exc, limit) from None
        await self._record_written(target, stored, kind, origin, source)
        return Written(target, stored.bytes, kind, self.sign_path(target).url)

    async def store_upload(
        self,
        workspace_id: UUID,
        upload: Upload,
        *,
        origin: ObjectOrigin | None,
        into: str | None = None,
    ) -> Written:
        """Move a received upload to its path: the ``path`` field, or ``uploads/<uuid><ext>``
        (inside the named folder when ``path`` is a folder). With ``into``, the uploader may
        not choose: the file gets a fresh ``<uuid><ext>`` in that folder, so it never replaces
        a file."""
        raw = upload.fields.get("path", "")
        if into is not None:
            if raw:
                raise ApiError(
                    ErrorCode.FORBIDDEN,
                    f"this key's uploads get generated names in {into}/; send no path field",
                    details=[ErrorDetail(pointer="/path", message="not allowed for this key")],
                )
            raw = f"{into}/"
        target = paths.resolve(workspace_id, raw, allow_root=True)
        if not target.folder and "." not in target.name and await self._is_folder(target):
            target = DrivePath(workspace_id, target.path, folder=True)
        if target.folder:
            folder = target.path if target.path else "uploads"
            ext = upload.extension or _extension_for(upload.content_type)
            target = paths.resolve(workspace_id, f"{folder}/{uuid.uuid4()}{ext}")
        kind = _content_type(
            upload.content_type, target.path if "." in target.name else upload.filename or ""
        )
        stored = await self.backend.put_file(target.key, upload.spool, content_type=kind)
        await self._record_written(target, stored, kind, origin, "job" if origin else "upload")
        return Written(target, stored.bytes, kind, self.sign_path(target).url)

    async def _is_folder(self, target: DrivePath) -> bool:
        if await self.backend.stat(target.key) is not None:
            return False
        listing = await self.backend.children(target.prefix)
        return bool(listing.folders or listing.files)

    async def record_written(
        self, workspace_id: UUID, raw_paths: list[str], *, origin: ObjectOrigin
    ) -> list[str]:
        """Record files a job wrote in place (the local backend's ``./drive``): their size and
        origin. Paths that hold no regular file (removed since, or links) or that are not valid
        drive paths are skipped."""
        events = []
        recorded = []
        known = (
            await self.metadata.written_by_tools(workspace_id, origin.job_id)
            if origin.tool is None
            else {}
        )
        for raw in raw_paths:
            try:
                target = paths.resolve(workspace_id, raw)
            except paths.InvalidPath:
                continue  # a name a job may make on disk but the drive cannot serve (a backslash…)
            stored = await self.backend.stat(target.key)
            if stored is None:
                continue
            same = known.get(target.path)
            if same is not None and same[0] == stored.bytes and stored.updated_at <= same[1]:
                # Already recorded by a tool of this job (media, download_url …) and unchanged
                # since: a tool-less report (the runner's scan) would only erase the tool.
                recorded.append(target.path)
                continue
            kind = _content_type(stored.content_type, target.path)
            events.append(
                objects.written_event(
                    workspace_id,
                    target.path,
                    size=stored.bytes,
                    content_type=kind,
                    written_at=datetime.now(UTC),
                    origin=origin,
                    source="job",
                )
            )
            recorded.append(target.path)
        await self.metadata.record(events)
        return recorded

    # -- reading ---------------------------------------------------------------------------

    async def stat(self, workspace_id: UUID, raw_path: str) -> tuple[DrivePath, StoredObject, str]:
        target = paths.resolve(workspace_id, raw_path)
        stored = await self.backend.stat(target.key)
        if stored is None:
            raise NotFound(target.path)
        kinds = await self.metadata.content_types(workspace_id, [target.path])
        return (
            target,
            stored,
            kinds.get(target.path) or _content_type(stored.content_type, target.path),
        )

    async def listing(self, workspace_id: UUID, raw_prefix: str) -> dict[str, Any]:
        """Direct children of a folder: ``{prefix, folders, files}``."""
        folder = paths.resolve(workspace_id, raw_prefix, param="prefix", allow_root=True)
        found = await self.backend.children(folder.prefix)
        cut = len(f"{workspace_id}/")
        rel = [f.key[cut:] for f in found.files]
        kinds = await self.metadata.content_types(workspace_id, rel)
        return {
            "prefix": f"{folder.path}/" if folder.path else "",
            "folders": sorted(found.folders),
            "files": [
                {
                    "name": path.rsplit("/", 1)[-1],
                    "path": path,
                    "bytes": f.bytes,
                    "content_type": kinds.get(path) or _content_type(f.content_type, path),
                    "updated_at": _iso(f.updated_at),
                }
                for path, f in zip(rel, found.files, strict=True)
            ],
        }

    async def origin(self, workspace_id: UUID, raw_path: str) -> Origin:
        target = paths.resolve(workspace_id, raw_path)
        return await self.metadata.origin(workspace_id, target.path)

    def zip(self, workspace_id: UUID, raw_prefix: str) -> tuple[str, AsyncIterator[bytes]]:
        """``(root folder name, archive stream)`` of everything under a prefix."""
        folder = paths.resolve(workspace_id, raw_prefix, param="prefix", allow_root=True)
        root = folder.name or "drive"
        cut = len(folder.prefix)

        async def entries() -> AsyncIterator[tuple[str, StoredObject, str]]:
            async for obj in self.backend.walk(folder.prefix):
                yield f"{root}/{obj.key[cut:]}", obj, _content_type(obj.content_type, obj.key)

        return root, stream_zip(entries(), lambda key: self.backend.read(key))

    # -- signing ---------------------------------------------------------------------------

    def sign_path(self, target: DrivePath, *, ttl: int = DEFAULT_TTL_SECONDS) -> SignedLink:
        return self.signer.sign(target.workspace_id, target.path, ttl=ttl)

    async def sign(self, workspace_id: UUID, raw_path: str, *, ttl: int) -> dict[str, Any]:
        check_ttl(ttl)
        target, _, _ = await self.stat(workspace_id, raw_path)
        return {
            "path": target.path,
            "signed_url": self.sign_path(target, ttl=ttl).url,
            "expires_in": ttl,
        }

    async def sign_many(
        self,
        workspace_id: UUID,
        raw_paths: list[str],
        *,
        ttl: int,
        written_by: Sequence[UUID] | None = None,
        readable: str | None = None,
    ) -> dict[str, str | None]:
        """Links for paths found in a job's result; a path that is not valid gets ``None``.
        With ``written_by``, only files those jobs wrote, or that lie under the ``readable``
        folder, are signed: a result cannot turn a path its reader could not open into a link."""
        check_ttl(ttl)
        targets: dict[str, DrivePath | None] = {}
        for raw in raw_paths:
            try:
                targets[raw] = paths.resolve(workspace_id, raw)
            except paths.InvalidPath:
                targets[raw] = None
        allowed: set[str] | None = None
        if written_by is not None:
            checked = [t.path for t in targets.values() if t is not None]
            allowed = await self.metadata.written_by(workspace_id, written_by, checked)
            if readable:
                under = readable.strip("/") + "/"
                allowed |= {p for p in checked if p.startswith(under)}
        return {
            raw: self.sign_path(target, ttl=ttl).url
            if target is not None and (allowed is None or target.path in allowed)
            else None
            for raw, target in targets.items()
        }

    async def share(self, workspace_id: UUID, raw_path: str) -> dict[str, Any]:
        target, _, _ = await self.stat(workspace_id, raw_path)
        link = self.sign_path(target, ttl=SHARE_TTL_SECONDS)
        return {"url": link.url, "expires_at": _iso(datetime.fromtimestamp(link.expires_at, UTC))}

    # -- deleting --------------------------------------------------------------------------

    async def delete(self, workspace_id: UUID, raw_path: str) -> int:
        """Delete a file, or everything under a folder (a trailing ``/``, or a name without an
        extension that holds files); returns how many files went."""
        target = paths.resolve(workspace_id, raw_path, allow_root=False)
        keys: list[str]
        if not target.folder and await self.backend.stat(target.key) is not None:
            keys = [target.key]
        elif target.folder or "." not in target.name:
            keys = [obj.key async for obj in self.backend.walk(target.prefix)]
        else:
            keys = []
        if not keys:
            return 0
        await self.backend.delete(keys)
        cut = len(f"{workspace_id}/")
        events = objects.deleted_events(
            workspace_id, [k[cut:] for k in keys], deleted_at=datetime.now(UTC)
        )
        await self.metadata.record(events)
        return len(keys)


def _content_type(declared: str | None, name: str) -> str:
    if declared and declared != DEFAULT_CONTENT_TYPE:
        return declared
    return guess_content_type(name)


def _extension_for(content_type: str | None) -> str:
    import mimetypes

    if not content_type or content_type == DEFAULT_CONTENT_TYPE:
        return ""
    ext = mimetypes.guess_extension(content_type, strict=False) or ""
    return {".jpe": ".jpg", ".jpeg": ".jpg"}.get(ext, ext)
