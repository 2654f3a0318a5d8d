"""Where the drive's bytes live: one interface, two backends (local disk and S3).

Keys are ``/``-separated and already checked (:mod:`puras_drive.paths` for workspace files,
:mod:`puras_drive.payloads` for the platform's payload objects). A backend never follows a
symbolic link and never lets a write be seen half-done: a write that fails or passes its byte
limit leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from puras_common.api import ApiError, ErrorCode

CHUNK_BYTES = 256 * 1024
"""How much a read yields at a time: memory stays flat whatever the file's size."""

DEFAULT_CONTENT_TYPE = "application/octet-stream"


def guess_content_type(name: str) -> str:
    """A content type from a file name's extension."""
    return mimetypes.guess_type(name, strict=False)[0] or DEFAULT_CONTENT_TYPE


class TooLarge(ApiError):
    """A write passed its byte limit; nothing was stored."""

    def __init__(self, limit: int, *, what: str = "file") -> None:
        super().__init__(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{what} exceeds the limit of {limit} bytes ({limit / (1024 * 1024):g} MiB)",
        )
        self.limit = limit


class QuotaExceeded(ApiError):
    """507: the workspace's drive holds its quota, or this write would pass it."""

    def __init__(self, *, used: int, quota: int, incoming: int | None = None) -> None:
        what = (
            f"this file would take the drive past its quota of {quota} bytes ({used} used)"
            if incoming is not None
            else f"the drive holds {used} bytes; its quota is {quota} bytes"
        )
        super().__init__(
            ErrorCode.QUOTA_EXCEEDED,
            f"{what} (PURAS_DRIVE_QUOTA_BYTES): delete files to make room",
            details={"quota": "drive_bytes", "used_bytes": used, "limit_bytes": quota},
        )


class NotFound(ApiError):
    """No file at a key."""

    def __init__(self, path: str) -> None:
        super().__init__(ErrorCode.NOT_FOUND, f"no file at {path!r}")


class Conflict(ApiError):
    """A file where a folder is needed, or the other way round."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(ErrorCode.CONFLICT, f"cannot write {path!r}: {reason}")


@dataclass(frozen=True)
class StoredObject:
    """One stored file."""

    key: str
    bytes: int
    updated_at: datetime
    content_type: str | None = None
    """As stored with the object (S3), or ``None`` where the backend keeps none (local disk)."""


@dataclass
class Listing:
    """The direct children of a prefix: folder names and files."""

    folders: list[str] = field(default_factory=list)
    files: list[StoredObject] = field(default_factory=list)


class Backend(Protocol):
    """What the drive needs from storage."""

    name: str

    async def start(self) -> None:
        """Connect, create the bucket or directories."""

    async def close(self) -> None:
        """Release connections."""

    async def write(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, limit: int | None = None
    ) -> StoredObject:
        """Store a stream under ``key`` atomically; :class:`TooLarge` past ``limit`` bytes."""
        ...

    async def put_file(self, key: str, source: Path, *, content_type: str) -> StoredObject:
        """Store a local file under ``key``; ``source`` is consumed (moved or deleted)."""
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """The object at ``key``, or ``None``."""
        ...

    def read(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of ``key`` in chunks; :class:`NotFound` if it is absent."""
        ...

    async def children(self, prefix: str) -> Listing:
        """Direct children of ``prefix`` (which ends in ``/``)."""
        ...

    def walk(self, prefix: str) -> AsyncIterator[StoredObject]:
        """Every file under ``prefix`` (which ends in ``/``), at any depth, in key order."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Delete ``keys``; missing ones are skipped, links never followed."""
        ...

    def temp_path(self) -> Path:
        """A fresh local path for spooling an upload before its final key is known."""
        ...


SPOOL_MAX_AGE_SECONDS = 3600


async def spool_and_put(
    backend: Backend,
    key: str,
    chunks: AsyncIterable[bytes],
    *,
    content_type: str,
    limit: int | None,
    spool_dir: Path,
) -> StoredObject:
    """Write a stream to ``key`` through a spool file, refusing it past ``limit`` bytes: nothing
    reaches the key unless all of it arrived within the limit."""
    fd, tmp = tempfile.mkstemp(dir=spool_dir, prefix="write-")
    try:
        size = 0
        with os.fdopen(fd, "wb", buffering=0) as out:
            async for chunk in chunks:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise TooLarge(limit)
                out.write(chunk)
        return await backend.put_file(key, Path(tmp), content_type=content_type)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def sweep_spool(folder: Path, *, max_age: float = SPOOL_MAX_AGE_SECONDS) -> int:
    """Remove spool files a crashed process left behind (older than ``max_age``); returns how many.
    Replicas may share the folder, so a young file may be another's upload in flight."""
    import os
    import time

    removed = 0
    cutoff = time.time() - max_age
    for entry in os.scandir(folder):
        try:
            if (
                entry.is_file(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_mtime < cutoff
            ):
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def open_backend(
    kind: str,
    *,
    data_dir: Path,
    owner: tuple[int, int] | None = None,
    owner_of: Callable[[str], tuple[int, int] | None] | None = None,
    s3_endpoint: str | None = None,
    s3_bucket: str = "puras",
    s3_region: str = "us-east-1",
) -> Backend:
    """The configured backend: ``local`` (files under ``data_dir``) or ``s3``."""
    if kind == "local":
        from puras_drive.storage.local import LocalBackend

        return LocalBackend(data_dir, owner=owner, owner_of=owner_of)
    if kind == "s3":
        from puras_drive.storage.s3 import S3Backend

        return S3Backend(
            bucket=s3_bucket, endpoint=s3_endpoint, region=s3_region, spool_dir=data_dir / "_tmp"
        )
    raise ValueError(f"PURAS_DRIVE_BACKEND must be 'local' or 's3', not {kind!r}")
