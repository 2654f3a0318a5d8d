"""File work on a tenant's tree, by descriptor: the platform never follows a tenant's path.

A job owns its workdir and its ``./drive`` and can change them while the runner, as root, works
on them: swap a folder for a link to ``/``, a file for a link to a platform secret, or a file
for a FIFO. Checking a path and then opening it by name loses that race. So every operation
here starts from a descriptor of the tree's root and opens one component at a time relative to
its parent's descriptor with ``O_NOFOLLOW``: a link anywhere on the way is an error, never a
detour. Files are opened ``O_NONBLOCK`` and ``fstat``-ed before any byte is read, so a FIFO, a
device or a socket is refused instead of blocking the caller. Writes go to a fresh name made
with ``O_EXCL`` in the parent's descriptor and are renamed over the target in that same
folder, so a link at the target's name is replaced, never written through.

Paths are relative, ``/``-separated, and already normalised by the caller; a component that is
empty, ``.`` or ``..`` is refused here too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 64
"""Folders deeper than this are not walked (each level holds a descriptor while it is)."""


class UnsafePath(OSError):
    """A path that goes through a link, names something other than a regular file or folder,
    or leaves the tree; the message says which."""

    def __init__(self, rel: str, reason: str) -> None:
        super().__init__(errno.ELOOP, f"{rel!r} {reason}")
        self.rel = rel
        self.reason = reason


def parts_of(rel: str) -> list[str]:
    """The components of a relative path; :class:`UnsafePath` for empty, ``.`` or ``..`` ones."""
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise UnsafePath(rel, "is not a plain relative path")
    return parts


def open_root(root: Path | str) -> int:
    """A descriptor of a tree's root folder; the root itself may not be a link."""
    return os.open(root, DIR_FLAGS)


def _open_dir(parent_fd: int, name: str, rel: str) -> int:
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(
                rel,
                "goes through a symbolic link (or a file where a folder goes), which is not followed",
            ) from None
        raise


def open_dir(
    root_fd: int, rel: str, *, create: bool = False, owner: tuple[int, int] | None = None
) -> int:
    """A descriptor of the folder ``rel`` under ``root_fd`` (``""`` is the root itself), opened
    one component at a time without following links; ``create`` makes missing folders (mode
    0700, given to ``owner``)."""
    fd = os.dup(root_fd)
    if not rel:
        return fd
    try:
        for part in parts_of(rel):
            try:
                child = _open_dir(fd, part, rel)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
                child = _open_dir(fd, part, rel)
                if owner is not None:
                    os.fchown(child, *owner)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_parent(
    root_fd: int, rel: str, *, create: bool = False, owner: tuple[int, int] | None = None
) -> tuple[int, str]:
    """The descriptor of ``rel``'s folder and ``rel``'s last component."""
    parts = parts_of(rel)
    return open_dir(root_fd, "/".join(parts[:-1]), create=create, owner=owner), parts[-1]


def open_regular_at(dir_fd: int, name: str, rel: str | None = None) -> int:
    """A read descriptor of the regular file ``name`` in ``dir_fd``: a link, FIFO, device,
    socket or folder there is :class:`UnsafePath`, and opening never blocks."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(
                rel or name, "goes through a symbolic link, which is not followed"
            ) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafePath(rel or name, "is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(root_fd: int, rel: str) -> int:
    """A read descriptor of the regular file ``rel`` under ``root_fd`` (see :func:`open_regular_at`)."""
    dir_fd, name = open_parent(root_fd, rel)
    try:
        return open_regular_at(dir_fd, name, rel)
    finally:
        os.close(dir_fd)


def lstat(root_fd: int, rel: str) -> os.stat_result:
    """The entry ``rel`` itself, reached without following a link on the way."""
    dir_fd, name = open_parent(root_fd, rel)
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(dir_fd)


def read_bytes(root_fd: int, rel: str, *, max_bytes: int) -> bytes:
    """At most ``max_bytes`` + 1 bytes of the regular file ``rel``."""
    fd = open_regular(root_fd, rel)
    with os.fdopen(fd, "rb") as source:
        return source.read(max_bytes + 1)


class AtomicWrite:
    """A new file written beside its target in the target's folder, then renamed over it.

    Use as a context manager: the body writes to :attr:`file`; on success the file gets its
    mode and owner by descriptor and replaces the target; on any error the temporary is removed.
    """

    def __init__(
        self, root_fd: int, rel: str, *, mode: int = 0o600, owner: tuple[int, int] | None = None
    ) -> None:
        self.rel = rel
        self.mode = mode
        self.owner = owner
        self.dir_fd, self.name = open_parent(root_fd, rel, create=True, owner=owner)
        self.tmp = f".puras-{secrets.token_hex(8)}"
        fd = os.open(
            self.tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=self.dir_fd,
        )
        self.file = os.fdopen(fd, "wb")

    def __enter__(self) -> AtomicWrite:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        try:
            if exc is None:
                self.file.flush()
                fd = self.file.fileno()
                os.fchmod(fd, self.mode)
                if self.owner is not None:
                    os.fchown(fd, *self.owner)
                self.file.close()
                os.rename(self.tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            else:
                self.file.close()
                with contextlib.suppress(OSError):
                    os.unlink(self.tmp, dir_fd=self.dir_fd)
        finally:
            os.close(self.dir_fd)


def is_empty(dir_fd: int) -> bool:
    """Whether the folder ``dir_fd`` holds no entry at all (one read, however large it is)."""
    with os.scandir(dir_fd) as it:  # on a copy of the descriptor, rewound as it closes
        return next(it, None) is None


def walk_files(
    root_fd: int, *, others: list[tuple[str, os.stat_result]] | None = None
) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file under the folder ``root_fd`` as ``(relative path, stat)``; links,
    special files and folders deeper than :data:`MAX_DEPTH` are skipped, never followed.
    ``others``, when given, collects the special files and every folder on the way."""
    yield from _walk(os.dup(root_fd), "", 0, others)


def _walk(
    fd: int, prefix: str, depth: int, others: list[tuple[str, os.stat_result]] | None
) -> Iterator[tuple[str, os.stat_result]]:
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield prefix + entry.name, st
                continue
            if others is not None and not stat.S_ISLNK(st.st_mode):
                others.append((prefix + entry.name, st))
            if stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
                try:
                    child = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                yield from _walk(child, f"{prefix}{entry.name}/", depth + 1, others)
    finally:
        os.close(fd)
