"""The local-disk backend: ``<data_dir>/<key>``.

Every path is walked one component at a time from an open directory with ``O_NOFOLLOW``, so a
symbolic link anywhere in a workspace (jobs can make them through their ``drive/`` folder) is
never followed: to the drive, a link is not a file. Writes go to ``_tmp/`` first and are renamed
into place, so readers see the old file or the new one, never half of one.

Jobs read and write a workspace's folder directly (``./drive`` is a link to it) as an
unprivileged uid: when ``owner`` is given, every directory and file made under a workspace is
chowned to it, and the data directory itself is traversable but not listable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from puras_drive.storage import (
    CHUNK_BYTES,
    Conflict,
    Listing,
    NotFound,
    StoredObject,
    spool_and_put,
    sweep_spool,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LINK_ERRORS = (errno.ELOOP, errno.ENOTDIR)


OwnerOf = Callable[[str], tuple[int, int] | None]
"""A workspace's folder name -> the uid and gid its entries belong to (None: leave them)."""


def _chown_tree(fd: int, owner: tuple[int, int]) -> None:
    """Give everything under the open directory ``fd`` to ``owner``; links are re-owned
    themselves and never followed."""
    with os.scandir(fd) as it:
        entries = list(it)
    for entry in entries:
        os.chown(entry.name, *owner, dir_fd=fd, follow_symlinks=False)
        if entry.is_dir(follow_symlinks=False):
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                _chown_tree(child, owner)
            finally:
                os.close(child)


def _stored(key: str, st: os.stat_result) -> StoredObject:
    return StoredObject(
        key=key, bytes=st.st_size, updated_at=datetime.fromtimestamp(st.st_mtime, UTC)
    )


class LocalBackend:
    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        owner: tuple[int, int] | None = None,
        owner_of: OwnerOf | None = None,
    ) -> None:
        self.root = root.absolute()
        self.owner = owner
        self.owner_of = owner_of
        """Who a workspace's entries belong to, by its folder's name (its own uid); beats
        ``owner``."""
        self.tmp = self.root / "_tmp"

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        self.tmp.mkdir(exist_ok=True)
        os.chmod(self.tmp, 0o700)
        sweep_spool(self.tmp)

    async def close(self) -> None:
        return None

    def temp_path(self) -> Path:
        return self.tmp / f"spool-{uuid.uuid4().hex}"

    def workspace_dir(self, workspace_prefix: str) -> Path:
        """The directory of one workspace (``<workspace_id>/``), created and owned for jobs.
        A folder some other uid owns (made before each workspace had its own) is given, with
        everything in it, to the workspace's owner."""
        parts = workspace_prefix.strip("/").split("/")
        fd = self._dir_fd(parts, create=True)
        try:
            owner = self._owner_of(parts)
            if owner is not None and os.fstat(fd).st_uid != owner[0]:
                _chown_tree(fd, owner)
                os.chown(fd, *owner)
                os.chmod(fd, 0o700)
        finally:
            os.close(fd)
        return self.root / workspace_prefix.strip("/")

    # -- walking paths without following links ------------------------------------------------

    def _owner_of(self, parts: list[str]) -> tuple[int, int] | None:
        """Who a new entry under ``parts`` is given to: workspaces are the jobs' (``owner``);
        platform areas (``_payloads``, ``_tmp``) stay the service's (None)."""
        if not parts or parts[0].startswith("_"):
            return None
        if self.owner_of is not None:
            return self.owner_of(parts[0])
        return self.owner

    def _dir_fd(self, parts: list[str], *, create: bool) -> int:
        """An open descriptor of ``root/parts…``; links refused, missing folders made if ``create``."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for index, part in enumerate(parts):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o700, dir_fd=fd)
                        if (owner := self._owner_of(parts)) is not None:
                            os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in _LINK_ERRORS:
                        where = "/".join(parts[: index + 1])
                        if create:
                            raise Conflict(
                                where, "a file or link is in the way of a folder"
                            ) from None
                        raise FileNotFoundError(where) from None
                    raise
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _split(self, key: str) -> tuple[list[str], str]:
        parts = key.split("/")
        return parts[:-1], parts[-1]

    def _open_file(self, key: str) -> tuple[int, os.stat_result]:
        folders, name = self._split(key)
        try:
            dfd = self._dir_fd(folders, create=False)
        except FileNotFoundError:
            raise NotFound(key) from None
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno in (*_LINK_ERRORS, errno.EISDIR):
                raise NotFound(key) from None
            raise
        finally:
            os.close(dfd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotFound(key)
        return fd, st

    # -- the interface -------------------------------------------------------------------------

    async def stat(self, key: str) -> StoredObject | None:
        try:
            fd, st = self._open_file(key)
        except NotFound:
            return None
        os.close(fd)
        return _stored(key, st)

    async def read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        fd, st = self._open_file(key)
        try:
            stop = st.st_size if end is None else min(end, st.st_size)
            position = start
            while position < stop:
                chunk = os.pread(fd, min(CHUNK_BYTES, stop - position), position)
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def write(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, limit: int | None = None
    ) -> StoredObject:
        return await spool_and_put(
            self, key, chunks, content_type=content_type, limit=limit, spool_dir=self.tmp
        )

    async def put_file(self, key: str, source: Path, *, content_type: str) -> StoredObject:
        folders, name = self._split(key)
        parts = key.split("/")
        if (owner := self._owner_of(parts)) is not None:
            os.chown(source, *owner)
        os.chmod(source, 0o600)
        dfd = self._dir_fd(folders, create=True)
        try:
            try:
                os.replace(source, name, dst_dir_fd=dfd)
            except OSError as exc:
                if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise Conflict(key, "a folder of that name exists") from None
                if exc.errno != errno.EXDEV:
                    raise
                self._copy_in(source, name, dfd)
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(dfd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(source)
        return _stored(key, st)

    def _copy_in(self, source: Path, name: str, dfd: int) -> None:
        staged = f".puras-{uuid.uuid4().hex}"
        fd = os.open(
            staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd
        )
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK_BYTES)
        os.replace(staged, name, src_dir_fd=dfd, dst_dir_fd=dfd)

    async def children(self, prefix: str) -> Listing:
        listing = Listing()
        try:
            dfd = self._dir_fd(prefix.strip("/").split("/"), create=False)
        except FileNotFoundError:
            return listing
        try:
            with os.scandir(dfd) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_symlink():
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        listing.folders.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        listing.files.append(
                            _stored(prefix + entry.name, entry.stat(follow_symlinks=False))
                        )
        finally:
            os.close(dfd)
        return listing

    async def walk(self, prefix: str) -> AsyncIterator[StoredObject]:
        try:
            dfd = self._dir_fd(prefix.strip("/").split("/"), create=False)
        except FileNotFoundError:
            return
        for item in self._walk_fd(dfd, prefix):
            yield item

    def _walk_fd(self, dfd: int, prefix: str) -> Iterator[StoredObject]:
        """Depth first, names sorted; closes ``dfd``."""
        try:
            with os.scandir(dfd) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                if entry.is_symlink():
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield _stored(prefix + entry.name, entry.stat(follow_symlinks=False))
                elif entry.is_dir(follow_symlinks=False):
                    try:
                        child = os.open(entry.name, _DIR_FLAGS, dir_fd=dfd)
                    except OSError:
                        continue
                    yield from self._walk_fd(child, f"{prefix}{entry.name}/")
        finally:
            os.close(dfd)

    async def delete(self, keys: list[str]) -> None:
        parents: set[str] = set()
        for key in keys:
            folders, name = self._split(key)
            try:
                dfd = self._dir_fd(folders, create=False)
            except FileNotFoundError:
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    os.unlink(name, dir_fd=dfd)
                    parents.add("/".join(folders))
            except FileNotFoundError:
                pass
            finally:
                os.close(dfd)
        for parent in sorted(parents, key=len, reverse=True):
            self._prune(parent.split("/"))

    def _prune(self, folders: list[str]) -> None:
        """Remove folders left empty by a delete, up to (not including) the workspace's root."""
        while len(folders) > 1:
            try:
                dfd = self._dir_fd(folders[:-1], create=False)
            except FileNotFoundError:
                return
            try:
                os.rmdir(folders[-1], dir_fd=dfd)
            except OSError:
                return
            finally:
                os.close(dfd)
            folders = folders[:-1]
