"""A job's own view of its workspace's drive: an overlay mount whose writes land in a folder of
the job's own.

Jobs of one workspace run at once, and on the local backend their ``./drive`` is one folder.
Watching that folder cannot tell which job changed a file. An overlay can: the workspace's
folder is the read-only lower layer, so the job reads the drive live, and whatever it creates
or changes lands in its own upper folder, which no other job writes. The upper folder is
exactly the job's changes, and its origin.

Mounting needs ``CAP_SYS_ADMIN`` (a runner that runs as root). Sandboxes are started before
the jobs that use them, so the mount reaches them by propagation: the runner's work root is
made a shared bind mount of itself once, and a sandbox's bind of a workspace's work folder
below it then receives each job's overlay as it is mounted, and its unmount.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_BIND = 0x1000
_MS_SHARED = 1 << 20
_MNT_DETACH = 0x2

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} on {target}: {os.strerror(err)}")


def _escaped(path: Path) -> str:
    """A path as /proc/self/mountinfo writes it."""
    out = str(path)
    for char in ("\\", " ", "\t", "\n"):
        out = out.replace(char, f"\\{ord(char):03o}")
    return out


def is_shared_mount(path: Path) -> bool:
    """Whether ``path`` is itself a mount point with shared propagation."""
    wanted = _escaped(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            if len(fields) > 6 and fields[4] == wanted:
                optional = fields[6 : fields.index("-")]
                if any(f.startswith("shared:") for f in optional):
                    return True
    return False


class SharedRoot:
    """``path`` as a shared mount (a bind of itself) while any runner of this host uses it.

    Each runner process holds a shared lock on ``.<name>.mount-users`` beside it for its life;
    setting up and closing take ``.<name>.mount-setup`` exclusively for a moment. The runner
    that closes last (it can take the users' lock exclusively) unmounts the bind, so none is
    left behind."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.path.mkdir(mode=0o711, parents=True, exist_ok=True)
        users = self.path.parent / f".{self.path.name}.mount-users"
        self._users = os.open(users, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            with _setting_up(self.path):
                fcntl.flock(self._users, fcntl.LOCK_SH)
                if not is_shared_mount(self.path):
                    _mount(str(self.path), str(self.path), None, _MS_BIND, None)
                    _mount(None, str(self.path), None, _MS_SHARED, None)
        except BaseException:
            os.close(self._users)
            raise

    def close(self) -> None:
        """Let go; the last runner out unmounts the bind."""
        try:
            _unmount_unless_used(self.path, self._users)
        finally:
            os.close(self._users)


def release_unused(path: Path) -> None:
    """Unmount the shared bind at ``path`` if no runner uses it: one a killed runner left."""
    path = path.resolve()
    try:
        users = os.open(path.parent / f".{path.name}.mount-users", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # never shared
    try:
        _unmount_unless_used(path, users)
    finally:
        os.close(users)


@contextlib.contextmanager
def _setting_up(path: Path) -> Iterator[None]:
    fd = os.open(
        path.parent / f".{path.name}.mount-setup", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _unmount_unless_used(path: Path, users: int) -> None:
    """Unmount the bind at ``path`` unless a runner other than ``users``' holder uses it."""
    with _setting_up(path):
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another runner still uses it
        if is_shared_mount(path):
            with contextlib.suppress(OSError):
                unmount(path)


def mount_overlay(*, lower: Path, upper: Path, work: Path, target: Path) -> None:
    """Mount ``lower`` (read-only) under ``upper`` (the job's writes) at ``target``.

    ``volatile`` (Linux 5.10+) spares the upper folder's file system a sync at unmount: the
    upper folder is scratch, uploaded from and removed, and a sync of the whole file system
    that holds the runner's cache can take seconds on a busy disk. Older kernels mount
    without it."""
    for path in (lower, upper, work):
        if any(c in str(path) for c in ",:\\\n"):
            raise OSError(f"{path} cannot be named in overlay options")
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    try:
        _mount("puras-drive", str(target), "overlay", _MS_NOSUID | _MS_NODEV, f"{options},volatile")
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        _mount("puras-drive", str(target), "overlay", _MS_NOSUID | _MS_NODEV, options)


def unmount(target: Path) -> None:
    """Detach the mount at ``target`` (lazily: a process still in it keeps its view)."""
    if _libc.umount2(os.fsencode(str(target)), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


class Scratch:
    """This runner process's folder for its jobs' upper and work folders, under ``root``,
    held by a lock on ``<name>.lock`` for the process's life. A runner that died leaves its
    overlays mounted and its folder behind; the next runner to start finds its lock free,
    unmounts them and removes the folder (:func:`sweep_gone`).

    With ``memory_bytes``, the folder is a tmpfs of that size: making, mounting and removing a
    job's folders then costs a fraction of what it costs on a journalled disk, where each
    directory operation may wait behind the fsyncs of PostgreSQL and NATS on the same disk.
    The jobs' writes to ``./drive`` are then held in memory until they are saved, and a job
    that writes past the size left gets ``ENOSPC``."""

    def __init__(self, root: Path, *, memory_bytes: int = 0) -> None:
        root.mkdir(mode=0o700, exist_ok=True)
        self.root = root
        name = uuid.uuid4().hex
        self._lock = os.open(root / f"{name}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.path = root / name
        self.path.mkdir(mode=0o700)
        self.in_memory = False
        """Whether the folder is a memory file system of its own (``memory_bytes`` > 0)."""
        if memory_bytes > 0:
            try:
                _mount(
                    "puras-scratch",
                    str(self.path),
                    "tmpfs",
                    _MS_NOSUID | _MS_NODEV,
                    f"size={memory_bytes},mode=0700",
                )
                self.in_memory = True
            except OSError:
                pass  # the folder stays on the disk it is on

    def close(self) -> None:
        """Remove this runner's folder (its jobs are over) and let go of its lock."""
        _unmount_if_mounted(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
        (self.root / f"{self.path.name}.lock").unlink(missing_ok=True)
        os.close(self._lock)


def sweep_gone(root: Path) -> list[str]:
    """Unmount and remove the scratch folders under ``root`` (``<work>/.overlays``) of runners
    that are gone, their jobs' overlays first; returns their names. A folder whose lock is held
    (its runner is alive, this one included) is left alone."""
    swept: list[str] = []
    if not root.is_dir():
        return swept
    for lock in root.glob("*.lock"):
        name = lock.name[: -len(".lock")]
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # its runner is alive
        try:
            for target in mounts_with_upper_under(root / name):
                with contextlib.suppress(OSError):
                    unmount(target)
            _unmount_if_mounted(root / name)
            shutil.rmtree(root / name, ignore_errors=True)
            lock.unlink(missing_ok=True)
            swept.append(name)
        finally:
            os.close(fd)
    return swept


def release_gone(work_root: Path) -> list[str]:
    """Let go of what runners that are gone left under ``work_root``: their scratch folders with
    their jobs' overlays (:func:`sweep_gone`), and the work folder's shared bind if no runner
    uses it (:func:`release_unused`); returns the gone runners' scratch names."""
    swept = sweep_gone(work_root / ".overlays")
    release_unused(work_root)
    return swept


def _unmount_if_mounted(path: Path) -> None:
    """Detach the file system mounted at ``path`` (a scratch folder's tmpfs), if any."""
    with contextlib.suppress(OSError):
        if os.path.ismount(path):
            unmount(path)


def mounts_with_upper_under(folder: Path) -> list[Path]:
    """Mount points of the overlays whose upper folder lies under ``folder``."""
    prefix = f"upperdir={_escaped(folder)}/"
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            before, _, after = line.partition(" - ")
            fields, tail = before.split(), after.split()
            if len(tail) >= 3 and tail[0] == "overlay":
                if any(option.startswith(prefix) for option in tail[2].split(",")):
                    found.append(Path(fields[4].encode().decode("unicode_escape")))
    return found
