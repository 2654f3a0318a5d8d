"""The workspace drive as an agent job sees it.

The job's ``./drive`` is the function runner's (:mod:`puras_function_runner.workdrive`): a link
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
import os
import re
import stat
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from puras_common.drive import DriveClient, DriveError
from puras_function_runner.workdrive import CopiedDrive, JobDrive
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
        raise DrivePathError(f"a drive path is at most {MAX_PATH_CHARS} characters; this one has {len(raw)}")
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

    def __init__(self, job: JobDrive, *, client: DriveClient, workspace_id: UUID, owner: tuple[int, int] | None) -> None:
        self.job = job
        self.client = client
        self.workspace_id = workspace_id
        self.owner = owner
        root = getattr(job, "root", None)
        assert root is not None, "a job drive has a folder"
        self.root = Path(root)

    # -- paths --------------------------------------------------------------------------------

    def _safe(self, rel: str) -> Path:
        """The host path of ``rel``, refusing any symbolic link on the way."""
        if not rel:
            raise DrivePathError("the drive root is a folder, not a file")
        current = self.root
        for part in rel.split("/"):
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                return self.root / rel
            if stat.S_ISLNK(mode):
                raise DrivePathError(f"{rel!r} goes through a symbolic link, which the platform does not follow")
        return current

    async def _present(self, rel: str) -> Path:
        """The file in the job's folder, fetched from the drive first where the folder is the
        job's own (S3) and the file is not there yet."""
        target = self._safe(rel)
        if not os.path.lexists(target) and isinstance(self.job, CopiedDrive):
            await self.job.prefetch([rel])
            target = self._safe(rel)
        return target

    # -- reading ------------------------------------------------------------------------------

    async def stat(self, path: str) -> DriveFile:
        """The file's size; DriveFileMissing / DrivePathError."""
        rel = normalise(path)
        target = await self._present(rel)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise DriveFileMissing(f"drive/{rel} does not exist") from None
        if not stat.S_ISREG(st.st_mode):
            raise DrivePathError(f"drive/{rel} is not a file")
        return DriveFile(rel, st.st_size)

    async def read(self, path: str, *, max_bytes: int) -> bytes:
        """The file's bytes (at most ``max_bytes`` + 1; the caller checked the size)."""
        rel = normalise(path)
        target = await self._present(rel)

        def read() -> bytes:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                return f.read(max_bytes + 1)

        try:
            return await asyncio.to_thread(read)
        except FileNotFoundError:
            raise DriveFileMissing(f"drive/{rel} does not exist") from None

    # -- writing ------------------------------------------------------------------------------

    async def write(self, path: str, data: bytes | AsyncIterable[bytes], *, tool: str) -> DriveFile:
        """Create or replace a file in the job's folder, then record (or upload) it with
        ``tool`` in its origin, so a link to it works at once."""
        rel = normalise(path)
        target = self._safe(rel)
        folder = target.parent
        missing = []
        probe = folder
        while not probe.exists() and probe != self.root:
            missing.append(probe)
            probe = probe.parent
        folder.mkdir(parents=True, exist_ok=True)
        for made in missing:
            self._own(made)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".puras-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes):
                    await asyncio.to_thread(out.write, data)
                    size = len(data)
                else:
                    async for chunk in data:
                        await asyncio.to_thread(out.write, chunk)
                        size += len(chunk)
            os.chmod(tmp, 0o600 if self.owner else 0o644)
            self._own(Path(tmp))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        await self.sync(tool=tool)
        return DriveFile(rel, size)

    def _own(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner, follow_symlinks=False)

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

    async def save(self, path: str, chunks: AsyncIterable[bytes], *, content_type: str | None) -> str:
        try:
            return (await self.drive.write(path, chunks, tool="media")).path
        except DrivePathError as exc:
            raise MediaError("invalid_request", f"output_path: {exc}", pointer="/output_path") from None
        except (DriveError, OSError) as exc:
            raise MediaError("storage_failed", f"the output could not be saved to drive/{path}: {exc}") from None

    async def sign(self, paths: list[str]) -> dict[str, str | None]:
        try:
            return await self.drive.client.sign_many(self.drive.workspace_id, paths)
        except DriveError:
            return dict.fromkeys(paths)
