"""Starting a sandbox's outer process without copying the caller's memory.

``asyncio``'s subprocesses fork the calling process when they must drop privileges (a
``preexec_fn``), and uvloop's always do. A fork copies the page tables of a service that
holds hundreds of megabytes, and its event loop waits meanwhile: about 9 ms for a 500 MB
process on a two-core VM, at every agent job's start. :func:`launch` uses ``posix_spawn``
instead (a vfork, then the exec), drops privileges with ``setpriv`` when it must, and
watches the process through a pidfd. Nothing of the caller's reaches the new process but
the descriptors it is given: every other one that could be inherited is closed in it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
from collections.abc import Sequence
from typing import Any

_CATCHABLE = tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})
"""Reset to their defaults in the new process: the caller ignores some (SIGPIPE, SIGXFSZ)."""


class Launched:
    """A process started by :func:`launch`: what a sandbox needs of ``asyncio``'s
    ``Process`` (its pid, its stderr, its exit, a kill)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pid: int, pidfd: int, stderr: asyncio.StreamReader
    ) -> None:
        self.pid = pid
        self.stderr = stderr
        self.returncode: int | None = None
        self._loop = loop
        self._pidfd = pidfd
        self._exited: asyncio.Future[int] = loop.create_future()
        loop.add_reader(pidfd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by a wait for any child elsewhere: its code is lost
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self.returncode = os.waitstatus_to_exitcode(status)
        self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if self.returncode is not None:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass


def usable(run_as: tuple[int, int] | None) -> bool:
    """Whether :func:`launch` can start a process here, as ``run_as`` (uid, gid) if given."""
    return hasattr(os, "pidfd_open") and (run_as is None or _setpriv() is not None)


async def launch(
    argv: Sequence[str], *, pass_fds: Sequence[int], run_as: tuple[int, int] | None
) -> Launched:
    """Start ``argv`` (an absolute path first) in a session of its own, with an empty
    environment, stdin and stdout on /dev/null, stderr on a pipe, and ``pass_fds`` open; as
    ``run_as`` (uid, gid, no supplementary groups) when given. Check :func:`usable` first."""
    loop = asyncio.get_running_loop()
    if run_as is not None:
        setpriv = _setpriv()
        assert setpriv is not None
        uid, gid = run_as
        argv = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]
    pid, pidfd, err_r = _spawn(argv, tuple(pass_fds))
    launched = Launched(loop, pid, pidfd, asyncio.StreamReader(loop=loop))
    try:
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(launched.stderr, loop=loop),
            os.fdopen(err_r, "rb", 0),
        )
    except BaseException:  # not left running unwatched
        launched.kill()
        await launched.wait()
        raise
    return launched


def _spawn(argv: Sequence[str], pass_fds: tuple[int, ...]) -> tuple[int, int, int]:
    """The new process's pid, a pidfd for it, and the read end of its stderr. A vfork: it
    returns once the process has called exec."""
    err_r, err_w = os.pipe()
    try:
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable(keep=pass_fds)]
        for fd in pass_fds:
            os.set_inheritable(fd, True)
        try:
            pid = os.posix_spawn(
                argv[0],
                list(argv),
                {},
                file_actions=actions,
                setsid=True,
                setsigmask=(),
                setsigdef=_CATCHABLE,
            )
        finally:
            for fd in pass_fds:
                os.set_inheritable(fd, False)
    except BaseException:
        os.close(err_r)
        raise
    finally:
        os.close(err_w)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(err_r)
        raise
    return pid, pidfd, err_r


def _inheritable(*, keep: tuple[int, ...]) -> list[int]:
    """This process's descriptors beyond stdio that a new process would inherit, but ``keep``.
    Python opens none such (PEP 446); a library might."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in keep:
            continue
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return found


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")
