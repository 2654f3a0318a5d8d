"""The workspace drive as an agent job sees it: ``file_read``, ``download_url`` and attachments
by ``drive_path`` go through :class:`JobDrive`, the one seam between the agent runner and the
drive's storage.

:class:`LocalJobDrive` works on the local backend's folder for the workspace
(``<drive data dir>/<workspace_id>/``), which is also what the job's ``./drive`` links to.
Paths are normalised (a leading ``drive/`` stripped) and checked to stay inside the workspace:
no absolute paths, ``..``, backslashes or control characters, and no symbolic link is followed,
so a link a job made cannot lead a tool outside its drive.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


class JobDrive(Protocol):
    """The workspace drive of one job."""

    workspace_id: str

    async def stat(self, path: str) -> DriveFile:
        """The file's size; DriveFileMissing / DrivePathError."""
        ...

    async def read(self, path: str, *, max_bytes: int) -> bytes:
        """The file's bytes (the caller checked the size)."""
        ...

    async def write(self, path: str, data: bytes) -> DriveFile:
        """Create or replace a file."""
        ...

    async def signed_url(self, path: str, *, ttl_seconds: int = 3600) -> str | None:
        """A URL that serves the file for ``ttl_seconds``, or None when the drive cannot sign."""
        ...


class LocalJobDrive:
    """The local backend's folder of one workspace."""

    def __init__(self, root: Path, workspace_id: str, *, owner: tuple[int, int] | None = None) -> None:
        self.workspace_id = workspace_id
        self.root = root.absolute() / workspace_id
        self.owner = owner
        """Who owns folders made here: the job uid, so bash can write where tools wrote."""

    def ensure(self) -> Path:
        """The workspace's folder, made if missing; what the job's ``./drive`` links to."""
        if not self.root.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self._own(self.root)
        return self.root

    def _own(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner)

    def _safe(self, path: str) -> Path:
        """The host path of ``path``, refusing any symbolic link on the way."""
        rel = normalise(path)
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

    async def stat(self, path: str) -> DriveFile:
        target = self._safe(path)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise DriveFileMissing(f"drive/{normalise(path)} does not exist") from None
        if not stat.S_ISREG(st.st_mode):
            raise DrivePathError(f"drive/{normalise(path)} is not a file")
        return DriveFile(normalise(path), st.st_size)

    async def read(self, path: str, *, max_bytes: int) -> bytes:
        target = self._safe(path)

        def read() -> bytes:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                return f.read(max_bytes + 1)

        try:
            return await asyncio.to_thread(read)
        except FileNotFoundError:
            raise DriveFileMissing(f"drive/{normalise(path)} does not exist") from None

    async def write(self, path: str, data: bytes) -> DriveFile:
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

        def write() -> None:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".puras-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o644)
                if self.owner is not None:
                    os.chown(tmp, *self.owner)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

        await asyncio.to_thread(write)
        return DriveFile(rel, len(data))

    async def signed_url(self, path: str, *, ttl_seconds: int = 3600) -> str | None:
        return None
