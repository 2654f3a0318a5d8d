"""Where outputs go: the workspace's drive, with the file's origin (job, skill, tool
``media``) recorded by the drive as it is written.

:class:`MediaStore` is the seam: the gateway writes through the drive service
(:class:`DriveStore`); the agent runner writes into the job's own ``./drive`` and syncs it, so the
agent's shell sees the file at once on either backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Protocol
from uuid import UUID

from puras_common.drive import DriveClient, DriveError, Origin

from puras_media.errors import MediaError


class MediaStore(Protocol):
    async def save(
        self, path: str, chunks: AsyncIterable[bytes], *, content_type: str | None
    ) -> str:
        """Write a file; returns its drive path (the drive's normalised form)."""
        ...

    async def sign(self, paths: list[str]) -> dict[str, str | None]:
        """A fresh one-hour link for each path."""
        ...


class DriveStore:
    """Writes through the drive service's internal listener."""

    def __init__(self, client: DriveClient, *, workspace_id: UUID, origin: Origin) -> None:
        self.client = client
        self.workspace_id = workspace_id
        self.origin = origin

    async def save(
        self, path: str, chunks: AsyncIterable[bytes], *, content_type: str | None
    ) -> str:
        try:
            written = await self.client.put(
                self.workspace_id, path, chunks, content_type=content_type, origin=self.origin
            )
        except DriveError as exc:
            raise storage_error(exc, path) from None
        return str(written["drive_path"])

    async def sign(self, paths: list[str]) -> dict[str, str | None]:
        try:
            return await self.client.sign_many(self.workspace_id, paths)
        except DriveError:
            return dict.fromkeys(paths)


def storage_error(exc: DriveError, path: str) -> MediaError:
    """A drive refusal as the media call's error: a path it will not take is the caller's."""
    if exc.status == 400:
        return MediaError("invalid_request", f"output_path {path!r}: {exc}", pointer="/output_path")
    return MediaError("storage_failed", f"the output could not be saved to drive/{path}: {exc}")
