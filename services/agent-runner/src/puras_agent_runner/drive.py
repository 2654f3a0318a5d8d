"""The workspace drive as an agent job sees it.

The job's ``./drive`` is the job host's (:mod:`puras_jobhost.workdrive`): a link
to the workspace's folder with the local backend, a folder of the job's own that is filled on
demand and written back with S3. :class:`AgentDrive` is what the built-in tools, attachments
and the ``media`` tool use on top of it:

* paths a model or caller wrote are normalised (a leading ``drive/`` stripped) and checked to
  stay inside the drive: no absolute paths, ``..``, backslashes or control characters, and no
  symbolic link is followed, so a link a job made cannot lead a tool outside its drive;
* a file not yet in the job's folder (S3) is fetched from the drive when a tool reads it;
* after every tool call the loop calls :meth:`AgentDrive.sync` with the tool's name, so what the
  tool (or bash) wrote is recorded, or uploaded, with the job, skill and tool as its origin;
  a tool that hands out a link syncs first, so the link works at once;
* links come from the drive service, which holds the signing key.
"""

from __future__ import annotations

import asyncio
import re
import stat
from collections.abc import AsyncIterable
from dataclasses import dataclass
from uuid import UUID

from puras_common.drive import DriveClient, DriveError
from puras_jobhost import safefs
from puras_jobhost.workdrive import JobDrive
from puras_media import MediaError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_PATH_CHARS = 1024


class DrivePathError(ValueError):
    """A drive path the job may not use; the message says why."""


class DriveFileMissing(FileNotFoundError):
    """No such file in the workspace's drive."""


@dataclass(frozen=True)
class DriveFile:
    path: str
    """Workspace-relative, normalised."""
    bytes: int


def normalise(raw: str) -> str:
    """A workspace-relative path from what a model or caller wrote, or DrivePathError."""
    if not isinstance(raw, str) or not raw.strip():
        raise DrivePathError("a drive path must be a non-empty string")
    if len(raw) > MAX_PATH_CHARS:
        raise DrivePathError(
            f"a drive path is at most {MAX_PATH_CHARS} characters; this one has {len(raw)}"
        )
    if _CONTROL.search(raw):
        raise DrivePathError(f"{raw!r} contains control characters")
    if "\\" in raw:
        raise DrivePathError(f"{raw!r} contains a backslash; separate folders with '/'")
    path = raw.strip()
    if path.startswith("/"):
        raise DrivePathError(f"{raw!r} is absolute; drive paths are relative to the drive root")
    if path.startswith("./"):
        path = path[2:]
    if path == "drive" or path.startswith("drive/"):
        path = path[len("drive/") :] if path != "drive" else ""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise DrivePathError(f"{raw!r} leaves the drive ('..' is not allowed)")
    return "/".join(parts)


class AgentDrive:
    """One agent job's drive: its ``./drive`` and the drive service behind it."""

    def __init__(
        self,
        job: JobDrive,
        *,
        client: DriveClient,
        workspace_id: UUID,
        owner: tuple[int, int] | None,
    ) -> None:
        self.job = job
        self.client = client
        self.workspace_id = workspace_id
        self.owner = owner
        self.root = job.root

    # -- reading ------------------------------------------------------------------------------

    def _unsafe(self, rel: str, exc: safefs.UnsafePath) -> DrivePathError:
        return DrivePathError(f"drive/{rel} {exc.reason}")

    async def stat(self, path: str) -> DriveFile:
        """The file's size; DriveFileMissing / DrivePathError."""
        rel = self._rel(path)
        try:
            await self.job.present(rel)
            st = self.job.lstat(rel)
        except FileNotFoundError:
            raise DriveFileMissing(f"drive/{rel} does not exist") from None
        except safefs.UnsafePath as exc:
            raise self._unsafe(rel, exc) from None
        if stat.S_ISLNK(st.st_mode):
            raise DrivePathError(f"drive/{rel} goes through a symbolic link, which is not followed")
        if not stat.S_ISREG(st.st_mode):
            raise DrivePathError(f"drive/{rel} is not a file")
        return DriveFile(rel, st.st_size)

    async def read(self, path: str, *, max_bytes: int) -> bytes:
        """The file's bytes (at most ``max_bytes`` + 1; the caller checked the size)."""
        rel = self._rel(path)
        try:
            await self.job.present(rel)
            return await asyncio.to_thread(self.job.read, rel, max_bytes=max_bytes)
        except FileNotFoundError:
            raise DriveFileMissing(f"drive/{rel} does not exist") from None
        except safefs.UnsafePath as exc:
            raise self._unsafe(rel, exc) from None

    def _rel(self, path: str) -> str:
        rel = normalise(path)
        if not rel:
            raise DrivePathError("the drive root is a folder, not a file")
        return rel

    # -- writing ------------------------------------------------------------------------------

    async def write(self, path: str, data: bytes | AsyncIterable[bytes], *, tool: str) -> DriveFile:
        """Create or replace a file in the job's folder, then record (or upload) it with
        ``tool`` in its origin, so a link to it works at once."""
        rel = self._rel(path)
        try:
            out = await asyncio.to_thread(self.job.writer, rel)
        except safefs.UnsafePath as exc:
            raise self._unsafe(rel, exc) from None
        size = 0
        with out:
            if isinstance(data, bytes):
                await asyncio.to_thread(out.file.write, data)
                size = len(data)
            else:
                async for chunk in data:
                    await asyncio.to_thread(out.file.write, chunk)
                    size += len(chunk)
        await self.sync(tool=tool)
        return DriveFile(rel, size)

    async def sync(self, *, tool: str | None = None) -> list[str]:
        """Record or upload what changed in the drive since the last sync, with ``tool`` in
        the origin; called after every tool call."""
        return await self.job.sync(tool=tool)

    async def signed_url(self, path: str, *, ttl_seconds: int = 3600) -> str | None:
        """A link that serves the file for ``ttl_seconds`` (None when the drive cannot sign)."""
        rel = normalise(path)
        try:
            links = await self.client.sign_many(self.workspace_id, [rel], ttl=ttl_seconds)
        except DriveError:
            return None
        return links.get(rel)


class AgentMediaStore:
    """Where the ``media`` tool saves outputs: the job's own drive, with origin tool ``media``."""

    def __init__(self, drive: AgentDrive) -> None:
        self.drive = drive

    async def save(
        self, path: str, chunks: AsyncIterable[bytes], *, content_type: str | None
    ) -> str:
        try:
            return (await self.drive.write(path, chunks, tool="media")).path
        except DrivePathError as exc:
            raise MediaError(
                "invalid_request", f"output_path: {exc}", pointer="/output_path"
            ) from None
        except (DriveError, OSError) as exc:
            raise MediaError(
                "storage_failed", f"the output could not be saved to drive/{path}: {exc}"
            ) from None

    async def sign(self, paths: list[str]) -> dict[str, str | None]:
        try:
            return await self.drive.client.sign_many(self.drive.workspace_id, paths)
        except DriveError:
            return dict.fromkeys(paths)
