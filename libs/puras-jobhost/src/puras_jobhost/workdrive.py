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
import shutil
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from puras.drive import FETCHED_ENV, relative
from puras.netguard import ALLOW_ENV
from puras_common.drive import DriveClient, DriveError, Mount, Origin, drive_paths_in
from puras_common.logging import get_logger

from puras_jobhost import overlay, safefs

log = get_logger("puras_jobhost.workdrive")

_CHUNK = 256 * 1024
_MAX_REPORT = 5000
"""Paths per origin report; a job that wrote more is reported in several."""
MAX_PREFETCH = 1000
"""Drive files named in a job's inputs that are fetched before it starts."""
_FETCHED_FILE = ".puras-drive-fetched"
_MAX_FETCHED_READ = 4 * 1024 * 1024
"""Bytes of the fetched-files list read per sync; the rest waits for the next one."""
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
        fd = safefs.open_root(root)
    except OSError:
        return
    try:
        yield from safefs.walk_files(fd)
    finally:
        os.close(fd)


class JobDrive:
    """One job's ``./drive``: a folder the runner holds by descriptor from attach to release."""

    def __init__(
        self,
        *,
        root: Path,
        client: DriveClient,
        origin: Origin,
        workspace_id: UUID,
        owner: tuple[int, int] | None = None,
    ) -> None:
        self.root = root
        self.root_fd = safefs.open_root(root)
        """The folder, opened once: what the job later makes of its name does not matter."""
        self.client = client
        self.origin = origin
        self.workspace_id = workspace_id
        self.owner = owner
        self.env: dict[str, str] = {}
        """Added to the job's environment."""
        self.host_dir: Path | None = None
        """The host folder a sandbox must bind (read-write, at the same path) for ``./drive``."""
        self._saved = False

    async def sync(self, *, tool: str | None = None) -> list[str]:
        """Record (or upload) what the job created or changed since the last sync; returns the
        drive paths saved. Agents call it after each tool call with the tool's name."""
        raise NotImplementedError

    async def present(self, rel: str) -> None:
        """Make ``rel`` readable in the folder if the drive has it (fetched where the folder is
        the job's own); a no-op where the folder is the drive itself."""

    def lstat(self, rel: str) -> os.stat_result:
        """The entry at ``rel``, reached without following links (:class:`safefs.UnsafePath`)."""
        return safefs.lstat(self.root_fd, rel)

    def read(self, rel: str, *, max_bytes: int) -> bytes:
        """At most ``max_bytes`` + 1 bytes of the regular file ``rel`` (blocking: run it in a
        thread)."""
        return safefs.read_bytes(self.root_fd, rel, max_bytes=max_bytes)

    def writer(self, rel: str) -> safefs.AtomicWrite:
        """A new file that replaces ``rel`` when complete, owned by the job's uid."""
        return safefs.AtomicWrite(
            self.root_fd, rel, mode=0o600 if self.owner else 0o644, owner=self.owner
        )

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
        try:
            await self.settle()
        finally:
            await asyncio.to_thread(self.close)  # an overlay's unmount takes milliseconds

    async def settle(self) -> None:
        """Save what a job that did not reach :meth:`save` wrote, once; the folder stays open
        until :meth:`close` (blocking: an overlay is unmounted)."""
        if not self._saved:
            self._saved = True
            try:
                await self.sync()
            except (DriveError, OSError) as exc:
                log.warning("drive files of an unfinished job were not saved", error=str(exc))

    def close(self) -> None:
        """Let go of the folder's descriptors (idempotent)."""
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1


class LiveDrive(JobDrive):
    """``./drive`` links to the workspace's folder on this host (the local backend)."""

    def __init__(self, *, since_ns: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host_dir = self.root
        self._since_ns = since_ns
        self._reported: dict[str, tuple[int, int]] = {}

    def _changed(self) -> list[tuple[str, tuple[int, int]]]:
        """Files changed since the last sync: one ``lstat`` per file of the workspace (about
        10 µs each), which is why it runs in a worker thread."""
        return [
            (rel, (st.st_size, st.st_mtime_ns))
            for rel, st in safefs.walk_files(self.root_fd)
            if st.st_ctime_ns >= self._since_ns
            and self._reported.get(rel) != (st.st_size, st.st_mtime_ns)
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


class _WrittenBack(JobDrive):
    """A drive whose changed files are uploaded with the job's origin: those in
    :meth:`_scan_fd` whose size or modification time differ from the baseline."""

    def __init__(self, *, workdir_fd: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workdir_fd = workdir_fd
        """The job's workdir, where the SDK lists what it fetched or saved (:data:`FETCHED_ENV`),
        in a file it makes on its first entry: a job that fetches nothing costs no file."""
        self.env[FETCHED_ENV] = str(self.root.parent / _FETCHED_FILE)
        self._fetched_offset = 0
        self._baseline: dict[str, tuple[int, int]] = {}

    def _scan_fd(self) -> int:
        return self.root_fd

    def _read_fetched(self) -> None:
        """Files the SDK fetched on demand, or already uploaded when the job signed them, are in
        the drive as they are: nothing to write back. Only lines added since the last sync count.
        The list is the job's to write: anything but a regular file there is ignored."""
        try:
            fd = safefs.open_regular_at(self.workdir_fd, _FETCHED_FILE)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("the job's fetched-files list is not a regular file", error=str(exc))
            return
        with os.fdopen(fd, "rb") as source:
            source.seek(self._fetched_offset)
            chunk = source.read(_MAX_FETCHED_READ)
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._fetched_offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                item = json.loads(line)
                self._baseline[str(item["path"])] = (int(item["bytes"]), int(item["mtime_ns"]))

    def close(self) -> None:
        super().close()
        if self.workdir_fd >= 0:
            os.close(self.workdir_fd)
            self.workdir_fd = -1

    async def sync(self, *, tool: str | None = None) -> list[str]:
        self._read_fetched()
        origin = Origin(self.origin.job_id, self.origin.skill_name, tool or self.origin.tool)
        scan = self._scan_fd()
        others: list[tuple[str, os.stat_result]] = []
        found = await asyncio.to_thread(lambda: list(safefs.walk_files(scan, others=others)))
        await self._removed(others)
        saved = []
        for rel, st in found:
            if self._baseline.get(rel) == (st.st_size, st.st_mtime_ns):
                continue
            try:
                fd = safefs.open_regular(scan, rel)
            except OSError:
                continue  # gone, or swapped for a link or a special file since the walk
            with os.fdopen(fd, "rb") as source:
                opened = os.fstat(source.fileno())
                written = await self.client.put(
                    self.workspace_id, rel, _chunks(source), content_type=None, origin=origin
                )
            self._baseline[rel] = (opened.st_size, opened.st_mtime_ns)
            saved.append(written["drive_path"])
        return saved

    async def _removed(self, others: list[tuple[str, os.stat_result]]) -> None:
        """Apply what the job removed, where the folder can tell (the overlay)."""


class OverlayDrive(_WrittenBack):
    """``./drive`` is an overlay of the workspace's folder on this host (the local backend, a
    runner that may mount): reads are live, writes land in the job's own upper folder, and
    that folder, no other job's, is what is uploaded with the job's origin."""

    def __init__(self, *, lower: Path, upper: Path, scratch: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lower_fd = safefs.open_root(lower)
        self.upper_fd = safefs.open_root(upper)
        self.scratch = scratch
        """Upper and work folders of the overlay, the runner's own, removed at release."""
        self._deleted: set[tuple[str, int]] = set()
        """Whiteouts and opaque folders already applied, by path and inode (a second removal
        of a path is a new inode)."""

    def _scan_fd(self) -> int:
        return self.upper_fd

    async def sync(self, *, tool: str | None = None) -> list[str]:
        # An upper folder with nothing in it: the job wrote and removed nothing (most jobs,
        # and most of an agent's tool calls), and the walk's trip to a worker thread is saved.
        if safefs.is_empty(self.upper_fd):
            return []
        return await super().sync(tool=tool)

    async def _removed(self, others: list[tuple[str, os.stat_result]]) -> None:
        """A file or folder the job removed from the workspace's is a whiteout in the upper
        folder (a character device 0:0); a folder it removed and made again is marked opaque.
        Either is deleted from the drive once, before the job's own files are uploaded."""
        for rel, st in others:
            if (rel, st.st_ino) in self._deleted:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                try:
                    folder = stat.S_ISDIR(safefs.lstat(self.lower_fd, rel).st_mode)
                except OSError:
                    continue  # not in the drive (any more): nothing to delete
                await self.client.delete(self.workspace_id, f"{rel}/" if folder else rel)
            elif stat.S_ISDIR(st.st_mode) and self._opaque(rel):
                await self.client.delete(self.workspace_id, f"{rel}/")
                for done in [k for k in self._baseline if k.startswith(f"{rel}/")]:
                    del self._baseline[done]  # uploaded before the folder went: again
            else:
                continue
            self._deleted.add((rel, st.st_ino))

    def _opaque(self, rel: str) -> bool:
        try:
            fd = safefs.open_dir(self.upper_fd, rel)
        except OSError:
            return False
        try:
            return os.getxattr(fd, "trusted.overlay.opaque") == b"y"
        except OSError:
            return False
        finally:
            os.close(fd)

    def close(self) -> None:
        mounted = self.root_fd >= 0
        super().close()
        for fd in (self.upper_fd, self.lower_fd):
            if fd >= 0:
                os.close(fd)
        self.upper_fd = self.lower_fd = -1
        if mounted:
            try:
                overlay.unmount(self.root)
            except OSError as exc:
                log.warning("a job's drive overlay could not be unmounted", error=str(exc))
                return  # its upper folder stays, rather than removed under a live mount
            shutil.rmtree(self.scratch, ignore_errors=True)


class CopiedDrive(_WrittenBack):
    """``./drive`` is the job's own folder, filled on demand and written back (S3)."""

    async def prefetch(self, raw_paths: list[str]) -> None:
        """Fetch the files the inputs name, before the job can touch the folder."""
        for raw in raw_paths:
            try:
                rel = relative(raw)
            except ValueError:
                continue  # the job's own load_path reports the bad path
            try:
                async with self.client.open(self.workspace_id, rel) as response:
                    await self._write_new(rel, response.aiter_bytes())
            except DriveError as exc:
                if exc.status not in (400, 404):
                    raise
                continue  # the job sees no such file, as it would with the local backend
            except safefs.UnsafePath:
                continue  # the job put a link or a file where a folder of the path goes

    async def present(self, rel: str) -> None:
        try:
            self.lstat(rel)
        except FileNotFoundError:
            await self.prefetch([rel])

    async def _write_new(self, rel: str, chunks: AsyncIterator[bytes]) -> None:
        out = self.writer(rel)
        with out:
            async for chunk in chunks:
                out.file.write(chunk)
            out.file.flush()
            st = os.fstat(out.file.fileno())
        self._baseline[rel] = (st.st_size, st.st_mtime_ns)


async def _chunks(source: Any) -> AsyncIterator[bytes]:
    while chunk := source.read(_CHUNK):
        yield chunk


class WorkDrives:
    """Gives each job its ``./drive``."""

    def __init__(
        self,
        client: DriveClient,
        *,
        owner: tuple[int, int] | None,
        ssrf_allow: str = "",
        work_root: Path | None = None,
        scratch_memory_bytes: int = 0,
    ) -> None:
        self.client = client
        self.owner = owner
        """Who a job's files belong to (the runner is root), unless the drive names the
        workspace's own uid."""
        self.ssrf_allow = ssrf_allow
        """Given to jobs as ``PURAS_SSRF_ALLOW``: what ``puras.load_bytes`` may fetch from."""
        self.work_root = work_root
        """Where job workdirs are made; given, and the runner root, a job's ``./drive`` on the
        local backend is an overlay of its own (:mod:`puras_jobhost.overlay`)."""
        self.overlays = work_root is not None and os.geteuid() == 0
        self.scratch_memory_bytes = scratch_memory_bytes
        """The size of the memory file system the overlays' upper folders live in; 0 for the
        disk (:class:`puras_jobhost.overlay.Scratch`)."""
        self._shared: overlay.SharedRoot | None = None
        self._scratch: overlay.Scratch | None = None
        self._mounts: dict[UUID, Mount] = {}
        if self.overlays and work_root is not None:
            # A runner killed before (a crash, ``puras up`` killed) left its scratch mounted, a
            # memory file system holding its jobs' writes, and the work folder's shared bind:
            # let them go now, not at the first job (which may never come).
            if swept := overlay.release_gone(work_root):
                log.info("removed the drive overlays of runners that are gone", runners=swept)

    async def _mount(self, workspace_id: UUID) -> Mount:
        mount = self._mounts.get(workspace_id)
        if mount is None:
            mount = await self.client.mount(workspace_id)
            self._mounts[workspace_id] = mount
        return mount

    def close(self) -> None:
        """At shutdown, after the jobs: remove this runner's overlay folders and, if no other
        runner of the host uses it, the work folder's shared mount."""
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    async def owner_for(self, workspace_id: UUID) -> tuple[int, int] | None:
        """The uid and gid the workspace's jobs run as, and their files belong to: the
        workspace's own (the drive assigns it), when this runner can switch to it (root)."""
        if self.owner is None:
            return None
        return (await self._mount(workspace_id)).owner or self.owner

    async def attach(
        self,
        workdir: Path,
        *,
        workspace_id: UUID,
        job_id: UUID,
        skill_name: str | None,
        inputs: Any,
    ) -> JobDrive:
        """Make ``workdir/drive`` for a job about to start."""
        origin = Origin(job_id=job_id, skill_name=skill_name)
        drive = await self._attach(workdir, workspace_id=workspace_id, origin=origin, inputs=inputs)
        if self.ssrf_allow:
            drive.env[ALLOW_ENV] = self.ssrf_allow
        return drive

    async def _attach(
        self, workdir: Path, *, workspace_id: UUID, origin: Origin, inputs: Any
    ) -> JobDrive:
        mount = await self._mount(workspace_id)
        owner = await self.owner_for(workspace_id)
        link = workdir / "drive"
        if mount.root is not None and self.overlays:
            try:
                return self._overlay(workdir, Path(mount.root), origin, workspace_id, owner)
            except OSError as exc:
                log.warning(
                    "the job's drive is the workspace's shared folder: its overlay failed, so "
                    "files other jobs of the workspace change meanwhile may be recorded as its",
                    error=str(exc),
                )
        if mount.root is not None:
            since = _coarse_now_ns()
            os.symlink(mount.root, link)
            return LiveDrive(
                root=Path(mount.root),
                since_ns=since,
                client=self.client,
                origin=origin,
                workspace_id=workspace_id,
                owner=owner,
            )
        # Made and opened before the job runs, so the descriptors are the platform's folders.
        link.mkdir(mode=0o700)
        drive = CopiedDrive(
            workdir_fd=safefs.open_root(workdir),
            **self._kwargs(link, origin, workspace_id, owner),
        )
        try:
            if owner is not None:
                os.fchown(drive.root_fd, *owner)
            await drive.prefetch(drive_paths_in(inputs, limit=MAX_PREFETCH))
        except BaseException:
            drive.close()
            raise
        return drive

    def _kwargs(
        self, root: Path, origin: Origin, workspace_id: UUID, owner: tuple[int, int] | None
    ) -> dict[str, Any]:
        return {
            "root": root,
            "client": self.client,
            "origin": origin,
            "workspace_id": workspace_id,
            "owner": owner,
        }

    def _overlay(
        self,
        workdir: Path,
        lower: Path,
        origin: Origin,
        workspace_id: UUID,
        owner: tuple[int, int] | None,
    ) -> JobDrive:
        assert self.work_root is not None
        if self._shared is None:
            try:
                self._shared = overlay.SharedRoot(self.work_root)
            except OSError:
                self.overlays = False  # this host cannot
                raise
        if self._scratch is None:
            # What runners that are gone left was swept as this one started.
            self._scratch = overlay.Scratch(
                self.work_root / ".overlays", memory_bytes=self.scratch_memory_bytes
            )
        scratch = self._scratch.path / uuid.uuid4().hex
        upper, work, target = scratch / "upper", scratch / "work", workdir / "drive"
        try:
            scratch.mkdir(mode=0o700)
            upper.mkdir(mode=0o700)  # the merged root takes its owner and mode
            work.mkdir(mode=0o700)
            if owner is not None:
                os.chown(upper, *owner)
            target.mkdir(mode=0o700)
            overlay.mount_overlay(lower=lower, upper=upper, work=work, target=target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            with contextlib.suppress(OSError):
                target.rmdir()
            raise
        try:
            return OverlayDrive(
                lower=lower,
                upper=upper,
                scratch=scratch,
                workdir_fd=safefs.open_root(workdir),
                **self._kwargs(target, origin, workspace_id, owner),
            )
        except BaseException:
            overlay.unmount(target)
            shutil.rmtree(scratch, ignore_errors=True)
            raise
