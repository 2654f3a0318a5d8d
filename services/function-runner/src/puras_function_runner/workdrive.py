"""A job's ``./drive``: the workspace's drive, as plain files in the job's workdir.

* **Local backend** (the drive keeps files on this host's disk): ``./drive`` is a link to the
  workspace's folder, so reads are live and writes land in place. Whatever the job created or
  changed there (a change time at or after the job began) is reported to the drive, which
  records the job as the file's origin.
* **S3**: ``./drive`` is a folder of the job's own. Files the inputs name by ``drive_path`` are
  fetched before the job starts, others on first read (``puras.load_path``); whatever the job
  created or changed is uploaded with its origin.

Either way that happens at teardown and, for agents, after each tool call (:meth:`JobDrive.sync`).
Links are never followed: a link the job makes, in ``./drive`` or as ``./drive`` itself, is not a
file to the drive, so a job cannot have the platform read or upload something it could not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from puras.drive import FETCHED_ENV, relative
from puras.netguard import ALLOW_ENV
from puras_common.drive import DriveClient, DriveError, Mount, Origin, drive_paths_in
from puras_common.logging import get_logger

log = get_logger("puras_function_runner.workdrive")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 256 * 1024
_MAX_REPORT = 5000
MAX_PREFETCH = 1000
"""Drive files named in a job's inputs that are fetched before it starts."""
"""Paths per origin report; a job that wrote more is reported in several."""
_FETCHED_FILE = ".puras-drive-fetched"
_CLOCK_REALTIME_COARSE = 5
"""Linux's clock id; Python's ``time`` module does not name it."""


class DriveSyncError(RuntimeError):
    """Files the job wrote under ``./drive`` could not be saved; the message says which."""


def _coarse_now_ns() -> int:
    """The clock file timestamps are taken from (it lags the fine clock by up to a tick)."""
    return time.clock_gettime_ns(_CLOCK_REALTIME_COARSE)


def walk_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file under ``root`` as ``(relative path, stat)``; links are skipped and
    never followed, ``root`` itself included."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return
    yield from _walk_fd(fd, "")


def _walk_fd(fd: int, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_file(follow_symlinks=False):
                yield prefix + entry.name, entry.stat(follow_symlinks=False)
            elif entry.is_dir(follow_symlinks=False):
                try:
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                yield from _walk_fd(child, f"{prefix}{entry.name}/")
    finally:
        os.close(fd)


def open_no_follow(root: Path, rel: str) -> int:
    """A descriptor of ``root/rel`` opened without following a link at any step; it must be a
    regular file."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        parts = rel.split("/")
        for part in parts[:-1]:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise FileNotFoundError(rel)
    return file_fd


class JobDrive:
    """One job's ``./drive``."""

    def __init__(self, *, client: DriveClient, origin: Origin, workspace_id: UUID) -> None:
        self.client = client
        self.origin = origin
        self.workspace_id = workspace_id
        self.env: dict[str, str] = {}
        """Added to the job's environment."""
        self.host_dir: Path | None = None
        """The host folder a sandbox must bind (read-write, at the same path) for ``./drive``."""
        self._saved = False

    async def sync(self, *, tool: str | None = None) -> list[str]:
        """Record (or upload) what the job created or changed since the last sync; returns the
        drive paths saved. Agents call it after each tool call with the tool's name."""
        raise NotImplementedError

    async def save(self) -> None:
        """The final sync, at teardown of a job that ran; :class:`DriveSyncError` on failure."""
        try:
            await self.sync()
        except (DriveError, OSError) as exc:
            raise DriveSyncError(f"files written under drive/ could not be saved: {exc}") from exc
        finally:
            self._saved = True

    async def release(self) -> None:
        """Teardown whatever happened: a job that failed or was killed still wrote what it wrote."""
        if self._saved:
            return
        self._saved = True
        try:
            await self.sync()
        except (DriveError, OSError) as exc:
            log.warning("drive files of an unfinished job were not saved", error=str(exc))


class LiveDrive(JobDrive):
    """``./drive`` links to the workspace's folder on this host (the local backend)."""

    def __init__(self, *, root: Path, since_ns: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.host_dir = root
        self._since_ns = since_ns
        self._reported: dict[str, tuple[int, int]] = {}

    def _changed(self) -> list[tuple[str, tuple[int, int]]]:
        """Files changed since the last sync: one ``lstat`` per file of the workspace (about
        10 µs each), which is why it runs in a worker thread."""
        return [
            (rel, (st.st_size, st.st_mtime_ns))
            for rel, st in walk_files(self.root)
            if st.st_ctime_ns >= self._since_ns and self._reported.get(rel) != (st.st_size, st.st_mtime_ns)
        ]

    async def sync(self, *, tool: str | None = None) -> list[str]:
        started = _coarse_now_ns()
        found = await asyncio.to_thread(self._changed)
        changed = [rel for rel, _ in found]
        origin = Origin(self.origin.job_id, self.origin.skill_name, tool or self.origin.tool)
        recorded: list[str] = []
        for start in range(0, len(changed), _MAX_REPORT):
            recorded += await self.client.record_written(
                self.workspace_id, changed[start : start + _MAX_REPORT], origin=origin
            )
        self._reported.update(found)
        self._since_ns = started
        return recorded


class CopiedDrive(JobDrive):
    """``./drive`` is the job's own folder, filled on demand and written back (S3)."""

    def __init__(self, *, root: Path, fetched_file: Path, owner: tuple[int, int] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.fetched_file = fetched_file
        self.owner = owner
        self.env[FETCHED_ENV] = str(fetched_file)
        self._baseline: dict[str, tuple[int, int]] = {}
        self._fetched_offset = 0

    def _own(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner, follow_symlinks=False)

    async def prefetch(self, raw_paths: list[str]) -> None:
        """Fetch the files the inputs name, before the job can touch the folder."""
        for raw in raw_paths:
            try:
                rel = relative(raw)
            except ValueError:
                continue  # the job's own load_path reports the bad path
            target = self.root / rel
            try:
                async with self.client.open(self.workspace_id, rel) as response:
                    await self._write_new(target, response.aiter_bytes())
            except DriveError as exc:
                if exc.status not in (400, 404):
                    raise
                continue  # the job sees no such file, as it would with the local backend
            st = os.stat(target, follow_symlinks=False)
            self._baseline[rel] = (st.st_size, st.st_mtime_ns)

    async def _write_new(self, target: Path, chunks: AsyncIterator[bytes]) -> None:
        missing = []
        parent = target.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir(mode=0o700)
            self._own(folder)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                out.write(chunk)
        self._own(target)

    def _read_fetched(self) -> None:
        """Files the SDK fetched on demand, or already uploaded when the job signed them, are in
        the drive as they are: nothing to write back. Only lines added since the last sync count."""
        with contextlib.suppress(OSError), open(self.fetched_file, encoding="utf-8") as lines:
            lines.seek(self._fetched_offset)
            while (line := lines.readline()).endswith("\n"):
                self._fetched_offset = lines.tell()
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    item = json.loads(line)
                    self._baseline[str(item["path"])] = (int(item["bytes"]), int(item["mtime_ns"]))

    async def sync(self, *, tool: str | None = None) -> list[str]:
        self._read_fetched()
        origin = Origin(self.origin.job_id, self.origin.skill_name, tool or self.origin.tool)
        saved = []
        for rel, st in list(walk_files(self.root)):
            if self._baseline.get(rel) == (st.st_size, st.st_mtime_ns):
                continue
            try:
                fd = open_no_follow(self.root, rel)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as source:
                written = await self.client.put(
                    self.workspace_id, rel, _chunks(source), content_type=None, origin=origin
                )
            self._baseline[rel] = (st.st_size, st.st_mtime_ns)
            saved.append(written["drive_path"])
        return saved


async def _chunks(source: Any) -> AsyncIterator[bytes]:
    while chunk := source.read(_CHUNK):
        yield chunk


class WorkDrives:
    """Gives each job its ``./drive``."""

    def __init__(self, client: DriveClient, *, owner: tuple[int, int] | None, ssrf_allow: str = "") -> None:
        self.client = client
        self.owner = owner
        self.ssrf_allow = ssrf_allow
        """Given to jobs as ``PURAS_SSRF_ALLOW``: what ``puras.load_bytes`` may fetch from."""
        self._mounts: dict[UUID, Mount] = {}

    async def _mount(self, workspace_id: UUID) -> Mount:
        mount = self._mounts.get(workspace_id)
        if mount is None:
            mount = await self.client.mount(workspace_id)
            self._mounts[workspace_id] = mount
        return mount

    async def attach(
        self, workdir: Path, *, workspace_id: UUID, job_id: UUID, skill_name: str | None, inputs: Any
    ) -> JobDrive:
        """Make ``workdir/drive`` for a job about to start."""
        origin = Origin(job_id=job_id, skill_name=skill_name)
        drive = await self._attach(workdir, workspace_id=workspace_id, origin=origin, inputs=inputs)
        if self.ssrf_allow:
            drive.env[ALLOW_ENV] = self.ssrf_allow
        return drive

    async def _attach(self, workdir: Path, *, workspace_id: UUID, origin: Origin, inputs: Any) -> JobDrive:
        mount = await self._mount(workspace_id)
        link = workdir / "drive"
        if mount.root is not None:
            since = _coarse_now_ns()
            os.symlink(mount.root, link)
            return LiveDrive(root=Path(mount.root), since_ns=since, client=self.client, origin=origin, workspace_id=workspace_id)
        link.mkdir(mode=0o700)
        fetched = workdir / _FETCHED_FILE
        fetched.touch(mode=0o600)
        drive = CopiedDrive(
            root=link, fetched_file=fetched, owner=self.owner, client=self.client, origin=origin, workspace_id=workspace_id
        )
        drive._own(link)
        drive._own(fetched)
        await drive.prefetch(drive_paths_in(inputs, limit=MAX_PREFETCH))
        return drive
