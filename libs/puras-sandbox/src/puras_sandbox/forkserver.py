"""The platform side of a warm fork server: :class:`ForkServer` and :class:`Child`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal as _signal
import socket
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _launch
from . import bwrap as _bwrap
from ._types import (
    Exec,
    ForkServerDied,
    Isolation,
    Limits,
    Outcome,
    PythonCall,
    SandboxError,
    SpawnFailed,
)

__all__ = ["ZYGOTE_SCRIPT", "Child", "ForkServer"]

log = logging.getLogger("puras_sandbox")

#: Path of the stdlib-only zygote script the fork server runs.
ZYGOTE_SCRIPT = str(Path(__file__).resolve().with_name("_zygote.py"))
_WARM_MODULE = str(Path(__file__).resolve().with_name("_zygote_warm.py"))

_HDR = struct.Struct("!II")
_STREAM_LIMIT = 1 << 20  # StreamReader line limit; reading pauses at twice this unread
_READ_CHUNK = 256 * 1024
_STDERR_TAIL = 16 * 1024
_DEFAULT_START_TIMEOUT = 30.0
_DEFAULT_MAX_RESULT = 64 * 1024 * 1024

_PROBE = (
    "import sys, json, os; print(json.dumps({'base_prefix': sys.base_prefix, "
    "'prefix': sys.prefix, 'executable': os.path.realpath(sys.executable), "
    "'path': sys.path}))"
)
_probe_cache: dict[str, dict[str, Any]] = {}


class _PipeReader(asyncio.StreamReaderProtocol):
    """Feeds a StreamReader and resolves ``closed`` when the pipe's write side is gone."""

    def __init__(self, reader: asyncio.StreamReader, closed: asyncio.Future[None]) -> None:
        super().__init__(reader)
        self._closed_fut = closed

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)


class _FdReader(asyncio.ReadTransport):
    """A read transport over one pipe end, driven by ``loop.add_reader``; it owns the fd and
    closes it exactly once.

    Not ``loop.connect_read_pipe``: uvloop's pipe transport closes the fd in libuv and then
    closes the file object it was given, which closes the same number a second time. Between
    the two, another thread (a drive walk, a workdir removal) may have opened a file under
    that number, and loses it: seen as EBADF in those threads, and as EEXIST when the number
    came back to the event loop still registered.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, protocol: asyncio.Protocol
    ) -> None:
        super().__init__()
        self._loop = loop
        self._fd = fd
        self._protocol = protocol
        self._paused = False
        os.set_blocking(fd, False)
        protocol.connection_made(self)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish(exc)
            return
        if data:
            self._protocol.data_received(data)
        else:
            self._protocol.eof_received()
            self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        if self._fd < 0:
            return
        if not self._paused:
            self._loop.remove_reader(self._fd)
        fd, self._fd = self._fd, -1
        os.close(fd)
        self._loop.call_soon(self._protocol.connection_lost, exc)

    def pause_reading(self) -> None:
        if self._fd >= 0 and not self._paused:
            self._paused = True
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if self._fd >= 0 and self._paused:
            self._paused = False
            self._loop.add_reader(self._fd, self._readable)

    def is_reading(self) -> bool:
        return self._fd >= 0 and not self._paused

    def is_closing(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        self._finish(None)


class _Collector(asyncio.Protocol):
    """Collects a pipe's bytes up to ``limit`` (drops the rest); resolves ``closed`` at EOF."""

    def __init__(self, closed: asyncio.Future[None], limit: int) -> None:
        self.chunks: list[bytes] = []
        self.closed = closed
        self.limit = limit
        self.size = 0
        self.overflow = False

    def data_received(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.overflow = True
            self.chunks.clear()
        elif not self.overflow:
            self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class Child:
    """One job forked by a :class:`ForkServer`.

    ``pid`` is the pid as seen by the zygote (inside its PID namespace when isolated); the
    child is its own session and process-group leader. ``stdout`` / ``stderr`` are
    :class:`asyncio.StreamReader` objects that can be read line by line while the child
    runs. Read them (or at least keep them drained) when a job may print more than about
    2 MiB: once that much is unread the pipe stops being emptied and the child blocks on
    its next write, so :meth:`wait` would not return.
    """

    pid: int
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader

    def __init__(
        self, server: ForkServer, call: PythonCall | Exec, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._server = server
        self._is_python = isinstance(call, PythonCall)
        self._loop = loop
        self.pid = -1
        self.stdout = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)
        self.stderr = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)
        self._exit: asyncio.Future[tuple[int | None, int | None, int]] = loop.create_future()
        self._closed: list[asyncio.Future[None]] = [loop.create_future() for _ in range(3)]
        self._result = _Collector(self._closed[2], server.max_result_bytes)
        self._transports: list[asyncio.BaseTransport] = []
        self._wrapped = 0
        """Read ends handed to a transport so far: those are closed by it, never by number."""
        self._outcome: Outcome | None = None

    def __repr__(self) -> str:
        state = "running" if not self._exit.done() else "exited"
        return f"<Child pid={self.pid} {state} server={self._server.name!r}>"

    # -- plumbing used by ForkServer
    def _connect(self, out_r: int, err_r: int, res_r: int) -> None:
        """Start reading the three pipes; each read end belongs to its transport from here."""
        specs = (
            (out_r, _PipeReader(self.stdout, self._closed[0])),
            (err_r, _PipeReader(self.stderr, self._closed[1])),
            (res_r, self._result),
        )
        for fd, proto in specs:
            self._wrapped += 1  # owned by the transport, even if adding its reader fails
            try:
                self._transports.append(_FdReader(self._loop, fd, proto))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise

    def _set_exit(self, exit_code: int | None, sig: int | None, cpu_ms: int = 0) -> None:
        if not self._exit.done():
            self._exit.set_result((exit_code, sig, cpu_ms))

    def _fail(self, exc: BaseException) -> None:
        if not self._exit.done():
            self._exit.set_exception(exc)
            self._exit.exception()  # mark retrieved: nobody may be waiting

    def _close_transports(self) -> None:
        for t in self._transports:
            t.close()

    # -- public
    @property
    def exited(self) -> bool:
        """True once the zygote has reported this child's exit (pipes may still be open)."""
        return self._exit.done() and self._exit.exception() is None

    async def wait(self) -> Outcome:
        """Wait until the child exited and its stdout, stderr and result pipes hit EOF.

        Returns the :class:`Outcome`. Raises :class:`ForkServerDied` if the zygote went away
        before reporting this child's exit. Cancelling ``wait()`` does not affect the child.
        """
        if self._outcome is not None:
            return self._outcome
        exit_code, sig, cpu_ms = await asyncio.shield(self._exit)
        await asyncio.shield(asyncio.gather(*self._closed))
        result: dict[str, Any] | None = None
        if self._is_python and self._result.overflow:
            result = {
                "ok": False,
                "error": {
                    "type": "ResultTooLarge",
                    "message": f"the result was {self._result.size} bytes; the limit is "
                    f"{self._result.limit} bytes (ForkServer.max_result_bytes)",
                    "traceback": "",
                },
            }
        elif self._is_python and self._result.chunks:
            try:
                parsed = json.loads(b"".join(self._result.chunks))
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and "ok" in parsed:
                result = parsed
        self._outcome = Outcome(exit_code=exit_code, signal=sig, result=result, cpu_ms=cpu_ms)
        return self._outcome

    async def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child's whole process group (no-op once it has exited)."""
        if self._exit.done() or self.pid < 0:
            return
        await self._server._signal_group(self.pid, sig)

    async def kill(self) -> None:
        """SIGKILL the child's whole process group (the child is its own session leader).

        Returns without waiting; follow with :meth:`wait`. When the child exits the zygote
        also SIGKILLs whatever is left in its process group.
        """
        await self.send_signal(_signal.SIGKILL)

    async def terminate(self, grace: float = 2.0) -> None:
        """SIGTERM the child's process group, then SIGKILL it if still running after ``grace``
        seconds. Returns once the child has exited (or the fork server died)."""
        await self.send_signal(_signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._exit), grace)
        except TimeoutError:
            await self.kill()
            with contextlib.suppress(ForkServerDied):
                await asyncio.shield(self._exit)
        except ForkServerDied:
            pass


class ForkServer:
    """A warm fork server ("zygote") for one prepared deployment.

    The zygote is started as ``[python, "-I", "-S", ZYGOTE_SCRIPT, <config>]`` (inside
    ``bwrap`` when ``isolation`` is given, with ``python`` resolved to its real path) and its
    ``sys.path`` is set to ``sys_path`` followed by the interpreter's stdlib; ``.pth`` files
    are not processed. ``preload`` modules are imported once in the zygote. With ``uid`` /
    ``gid`` (needs root) the zygote itself runs as that user with no supplementary groups,
    so every child is unprivileged. The control channel is a Unix socket pair; job pipes go
    over it with SCM_RIGHTS.

    ``prefork`` (default on) keeps one child forked and warmed up ahead of the next job, so
    a spawn skips the fork and most copy-on-write page faults; the job is handed to it and
    the next one is forked when the zygote is idle. ``start_timeout`` bounds :meth:`start`.
    A result larger than ``max_result_bytes`` is dropped and reported as a
    ``ResultTooLarge`` error (the platform never buffers more than that per job).

    ``limits``, for a fork server that serves one job whose calls all share them: the zygote
    takes them for itself once ready, so every process it starts has them from its first
    instruction. With ``isolation`` as well (a pid namespace, which ends every process in it
    with the zygote), a command (:class:`Exec`) with those limits is started with
    ``posix_spawn``, a vfork that copies nothing of the zygote, instead of a fork and an
    ``exec``: there are no rlimits or parent-death signal to set between the two.
    """

    def __init__(
        self,
        *,
        python: str,
        sys_path: list[str],
        preload: tuple[str, ...] = (),
        uid: int | None = None,
        gid: int | None = None,
        isolation: Isolation | None = None,
        name: str = "",
        start_timeout: float = _DEFAULT_START_TIMEOUT,
        prefork: bool = True,
        max_result_bytes: int = _DEFAULT_MAX_RESULT,
        limits: Limits | None = None,
    ) -> None:
        self.python = python
        self.sys_path = [str(p) for p in sys_path]
        self.preload = tuple(preload)
        self.uid = uid
        self.gid = gid if gid is not None else uid
        self.isolation = isolation
        self.name = name
        self.start_timeout = start_timeout
        self.prefork = prefork
        self.max_result_bytes = max_result_bytes
        self.limits = limits
        self._proc: asyncio.subprocess.Process | _launch.Launched | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._send_lock = asyncio.Lock()
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._pending: dict[int, tuple[Child, asyncio.Future[int]]] = {}
        self._children: dict[int, Child] = {}
        self._next_id = 0
        self._dead: ForkServerDied | None = None
        self._closing = False
        self._stderr_tail = bytearray()
        self._reader_task: asyncio.Task[None] | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._zygote_info: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<ForkServer name={self.name!r} pid={self.pid} alive={self.alive}>"

    # ------------------------------------------------------------------ properties
    @property
    def alive(self) -> bool:
        """True between a successful :meth:`start` and the zygote's death or :meth:`close`."""
        return (
            self._proc is not None
            and self._ready is not None
            and self._ready.done()
            and not self._ready.cancelled()
            and self._ready.exception() is None
            and self._dead is None
            and not self._closing
        )

    @property
    def pid(self) -> int | None:
        """Host pid of the process started for the zygote (``bwrap`` when isolated)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def zygote_pid(self) -> int | None:
        """The zygote's pid as it sees itself (inside its PID namespace when isolated)."""
        return self._zygote_info.get("pid")

    @property
    def live_children(self) -> int:
        """How many children have been spawned and not yet reported as exited."""
        return len(self._children)

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> ForkServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _command(self, data: Sequence[tuple[int, str]] = ()) -> list[str]:
        """The zygote's command line; in bubblewrap, with the files ``data`` makes (``(fd,
        path)``, see :func:`~puras_sandbox.bwrap.bwrap_command`)."""
        if self.isolation is None:
            return [self.python, "-I", "-S", ZYGOTE_SCRIPT]
        exe = _bwrap.bwrap_path()
        if exe is None:
            raise SandboxError("isolation requested but bwrap is not installed", name=self.name)
        info = await _probe_python(self.python)
        real = info["executable"]
        python_paths = [info["base_prefix"], info["prefix"], os.path.dirname(real), *info["path"]]
        prefix = _bwrap.bwrap_command(
            bwrap=exe,
            isolation=self.isolation,
            python=real,
            python_paths=python_paths,
            sys_path=self.sys_path,
            zygote_files=(ZYGOTE_SCRIPT, _WARM_MODULE),
            uid=self.uid,
            gid=self.gid,
            data=data,
        )
        return [*prefix, real, "-I", "-S", ZYGOTE_SCRIPT]

    def _accounts(self) -> list[tuple[int, str]]:
        """Descriptors holding the sandbox's own ``/etc/passwd`` and ``/etc/group``, for bwrap
        to read as it starts (none without isolation); the caller closes them."""
        if self.isolation is None:
            return []
        uid = self.uid if self.uid is not None else os.getuid()
        gid = self.gid if self.gid is not None else os.getgid()
        made: list[tuple[int, str]] = []
        try:
            for path, content in _bwrap.accounts(uid, gid).items():
                fd = os.memfd_create(os.path.basename(path))
                made.append((fd, path))
                os.write(fd, content)
                os.lseek(fd, 0, os.SEEK_SET)
        except BaseException:
            _close_all([fd for fd, _ in made])
            raise
        return made

    async def start(self) -> None:
        """Launch the zygote and wait until it has imported ``preload`` and is ready.

        Raises :class:`SandboxError` (with the zygote's stderr as detail) when it cannot be
        started, fails a preload, or is not ready within ``start_timeout`` seconds.
        """
        if self._proc is not None:
            raise SandboxError("ForkServer.start() called twice", name=self.name)
        loop = asyncio.get_running_loop()
        self._loop = loop
        data = self._accounts()
        try:
            cmd = await self._command(data)
        except BaseException:
            _close_all([fd for fd, _ in data])
            raise
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        passed = (child.fileno(), *(fd for fd, _ in data))
        config = json.dumps(
            {
                "fd": child.fileno(),
                "sys_path": self.sys_path,
                "preload": list(self.preload),
                "name": self.name,
                "prefork": self.prefork,
                "hold_limits": self.limits.to_wire() if self.limits is not None else None,
                "spawn_exec": self.limits is not None and self.isolation is not None,
            }
        )
        drop = _bwrap.run_as(self.uid, self.gid)
        try:
            if self.isolation is not None and _launch.usable(drop):
                # bwrap sets its own working directory (--chdir /).
                self._proc = await _launch.launch([*cmd, config], pass_fds=passed, run_as=drop)
            else:
                self._proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    config,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    pass_fds=passed,
                    env={},
                    cwd="/",
                    start_new_session=True,
                    **_bwrap.id_kwargs(drop),
                )
        except OSError as exc:
            parent.close()
            who = f" as uid {self.uid}" if self.uid is not None else ""
            raise SandboxError(
                f"cannot start the zygote {cmd[0]!r}{who}: {exc} (the interpreter and "
                f"{ZYGOTE_SCRIPT!r} must be readable and executable by that user)",
                name=self.name,
            ) from exc
        finally:
            child.close()
            _close_all([fd for fd, _ in data])
        parent.setblocking(False)
        self._sock = parent
        self._ready = loop.create_future()
        self._reader_task = loop.create_task(self._read_loop())
        self._stderr_task = loop.create_task(self._drain_stderr())
        try:
            self._zygote_info = await asyncio.wait_for(
                asyncio.shield(self._ready), self.start_timeout
            )
        except TimeoutError:
            await self._abort()
            raise SandboxError(
                f"zygote {self.name!r} (pid {self.pid}) was not ready within "
                f"{self.start_timeout} s",
                name=self.name,
                detail=self._tail(),
            ) from None
        except SandboxError as exc:
            await self._abort()
            raise SandboxError(
                f"zygote {self.name!r} failed to start: {exc.args[0]}",
                name=self.name,
                detail=self._tail(),
            ) from None
        except BaseException:  # cancelled: do not leave a zygote behind
            await self._abort()
            raise

    async def _abort(self) -> None:
        self._closing = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader_task, 5)
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._stderr_task, 5)
        if self._sock is not None:
            self._sock.close()

    async def close(self) -> None:
        """Kill every live child's process group and stop the zygote.

        Children killed this way report ``signal=SIGKILL`` from :meth:`Child.wait`; waits
        still pending after the zygote is gone raise :class:`ForkServerDied`. Idempotent.
        """
        if self._proc is None or self._closing:
            if self._proc is not None and self._reader_task is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(self._reader_task)
            return
        self._closing = True
        if self._dead is None:
            with contextlib.suppress(OSError, SandboxError):
                await self._send({"op": "shutdown"})
        try:
            await asyncio.wait_for(self._proc.wait(), 5)
        except TimeoutError:
            log.warning("fork server %r (pid %s) ignored shutdown; killing it", self.name, self.pid)
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        if self._reader_task is not None:
            try:
                await asyncio.wait_for(self._reader_task, 5)
            except TimeoutError:
                self._reader_task.cancel()
                self._on_gone("closed")
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._stderr_task, 2)
        if self._sock is not None:
            self._sock.close()

    # ------------------------------------------------------------------ spawning
    async def spawn(
        self,
        call: PythonCall | Exec,
        *,
        workdir: str,
        env: dict[str, str],
        limits: Limits = Limits(),  # noqa: B008 - frozen dataclass
    ) -> Child:
        """Fork a child that runs ``call`` in ``workdir`` with exactly ``env`` as environment.

        Returns once the zygote has forked it (the :class:`Child` knows its pid). Safe to
        call from many tasks at once. Raises :class:`ForkServerDied` if the zygote is gone,
        :class:`SpawnFailed` if it could not fork, :class:`SandboxError` for bad arguments.
        """
        self._check_usable()
        msg = _request(call, workdir, env, limits)
        payload = call.payload if isinstance(call, PythonCall) else b""
        loop = asyncio.get_running_loop()
        child = Child(self, call, loop)
        pipes = [os.pipe() for _ in range(3)]
        read_ends = [r for r, _ in pipes]
        write_ends = [w for _, w in pipes]
        req_id = self._next_id
        self._next_id += 1
        msg["id"] = req_id
        msg["nfds"] = 3
        fut: asyncio.Future[int] = loop.create_future()
        self._pending[req_id] = (child, fut)
        committed: list[bool] = []
        try:
            await self._send(msg, payload, write_ends, committed)  # closes write_ends
        except BaseException:
            if committed:
                fut.cancel()  # the frame still goes out; the reply will kill the child
            else:
                self._pending.pop(req_id, None)
            for fd in read_ends:
                os.close(fd)
            raise
        try:
            child._connect(*read_ends)
            await fut
        except BaseException:
            for fd in read_ends[child._wrapped :]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            child._close_transports()
            if not fut.done():
                fut.cancel()  # the reply will kill the child
            elif not fut.cancelled() and fut.exception() is None:
                self._background(child.kill())  # forked, but nobody will ever wait for it
            raise
        return child

    def _background(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_retrieve)

    def _check_usable(self) -> None:
        if self._dead is not None:
            raise self._died_error(self._dead.reason)
        if not self.alive:
            state = "closed" if self._closing else "not started"
            raise SandboxError(f"fork server {self.name!r} is {state}", name=self.name)

    # ------------------------------------------------------------------ control channel
    async def _send(
        self,
        msg: dict[str, Any],
        blob: bytes = b"",
        fds: list[int] | None = None,
        committed: list[bool] | None = None,
    ) -> None:
        """Send one frame (with ``fds``, which this always closes) to the zygote.

        Frames never interleave. Once any byte may have left, the rest of the frame is sent
        by a shielded task, so cancelling the caller cannot leave half a frame on the
        socket; ``committed`` (when given) gets ``True`` appended at that point.
        """
        fds = list(fds or ())
        try:
            sock, loop = self._sock, self._loop
            if sock is None or loop is None:
                raise SandboxError(f"fork server {self.name!r} is not started", name=self.name)
            body = json.dumps(msg, separators=(",", ":")).encode()
            data = _HDR.pack(len(body), len(blob)) + body + blob
            await self._send_lock.acquire()  # does not yield when the lock is free
        except BaseException:
            _close_all(fds)
            raise
        if committed is not None:
            committed.append(True)
        try:
            if self._dead is not None:
                raise self._died_error(self._dead.reason)
            sent = self._send_some(sock, data, fds)
        except BaseException:
            self._send_lock.release()
            _close_all(fds)
            raise
        if sent == len(data):  # the usual case: the whole frame went out at once
            self._send_lock.release()
            _close_all(fds)
            return
        task = loop.create_task(self._send_rest(sock, data, sent, fds))
        task.add_done_callback(_retrieve)
        await asyncio.shield(task)

    def _send_some(self, sock: socket.socket, data: bytes, fds: list[int]) -> int:
        try:
            if fds:
                return socket.send_fds(sock, [data], fds)
            return sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise self._died_error(f"control socket write failed: {exc}") from exc

    async def _send_rest(self, sock: socket.socket, data: bytes, sent: int, fds: list[int]) -> None:
        """Finish a frame; owns the send lock and ``fds`` (closes them)."""
        loop = self._loop
        assert loop is not None
        try:
            while fds and sent == 0:  # the fds ride on the first byte
                await _writable(loop, sock)
                if self._dead is not None:
                    raise self._died_error(self._dead.reason)
                sent = self._send_some(sock, data, fds)
            if sent < len(data):
                try:
                    await loop.sock_sendall(sock, memoryview(data)[sent:])
                except OSError as exc:
                    raise self._died_error(f"control socket write failed: {exc}") from exc
        finally:
            self._send_lock.release()
            _close_all(fds)

    async def _signal_group(self, pid: int, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(SandboxError):
                await self._send({"op": "kill", "pid": pid, "sig": int(sig)})
                return
        self._direct_killpg(pid, sig)

    def _direct_killpg(self, pid: int, sig: int) -> None:
        """Signal a child's group from here; only meaningful without a PID namespace."""
        if self.isolation is not None or pid <= 1:
            return
        if not _is_session_leader(pid):
            return
        with contextlib.suppress(OSError):
            os.killpg(pid, sig)

    async def _read_loop(self) -> None:
        assert self._sock is not None and self._loop is not None
        sock, loop = self._sock, self._loop
        buf = bytearray()
        reason = "control socket closed"
        try:
            while True:
                try:
                    data = await loop.sock_recv(sock, 1 << 16)
                except OSError as exc:
                    reason = f"control socket read failed: {exc}"
                    break
                if not data:
                    break
                buf += data
                while len(buf) >= _HDR.size:
                    jl, bl = _HDR.unpack_from(buf)
                    end = _HDR.size + jl + bl
                    if len(buf) < end:
                        break
                    msg = json.loads(bytes(buf[_HDR.size : _HDR.size + jl]))
                    del buf[:end]
                    self._dispatch(msg)
        finally:
            if self._proc is not None and self._proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._proc.wait()), 2)
            self._on_gone("closed" if self._closing else reason)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == "spawned":
            entry = self._pending.pop(msg["id"], None)
            if entry is None:
                return
            child, fut = entry
            child.pid = pid = int(msg["pid"])
            self._children[pid] = child
            if fut.done():  # the spawn() was cancelled: nobody will ever wait for it
                self._background(child.kill())
            else:
                fut.set_result(pid)
        elif kind == "exit":
            exited = self._children.pop(int(msg["pid"]), None)
            if exited is not None:
                exited._set_exit(
                    msg.get("exit_code"), msg.get("signal"), int(msg.get("cpu_ms") or 0)
                )
        elif kind == "spawn_failed":
            entry = self._pending.pop(msg["id"], None)
            if entry is not None and not entry[1].done():
                entry[1].set_exception(
                    SpawnFailed(
                        f"fork server {self.name!r} could not spawn: {msg.get('error')}",
                        name=self.name,
                        errno=msg.get("errno"),
                    )
                )
        elif kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)
        elif kind == "fatal":
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(SandboxError(str(msg.get("error")), name=self.name))
        else:
            log.warning("fork server %r sent an unknown message %r", self.name, msg)

    def _died_error(self, reason: str) -> ForkServerDied:
        rc = self._proc.returncode if self._proc is not None else None
        code = rc if rc is not None and rc >= 0 else None
        sig = -rc if rc is not None and rc < 0 else None
        return ForkServerDied(
            name=self.name,
            pid=self.pid,
            exit_code=code,
            signal=sig,
            stderr_tail=self._tail(),
            reason=reason,
        )

    def _on_gone(self, reason: str) -> None:
        if self._dead is not None:
            return
        self._dead = exc = self._died_error(reason)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                SandboxError(
                    f"zygote exited before it was ready ({reason}; "
                    f"exit code {exc.exit_code}, signal {exc.signal})",
                    name=self.name,
                )
            )
            self._ready.exception()
        for child, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(self._died_error(reason))
                fut.exception()
            child._fail(self._died_error(reason))
        self._pending.clear()
        children, self._children = self._children, {}
        for pid, child in children.items():
            self._direct_killpg(pid, _signal.SIGKILL)
            child._fail(self._died_error(reason))
        if children and not self._closing:
            log.error(
                "fork server %r died with %d live children: %s", self.name, len(children), exc
            )

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        stream = self._proc.stderr
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                line = await stream.read(4096)
            if not line:
                return
            self._stderr_tail += line
            if len(self._stderr_tail) > _STDERR_TAIL:
                del self._stderr_tail[:-_STDERR_TAIL]
            log.warning("zygote %r: %s", self.name, line.decode("utf-8", "replace").rstrip())

    def _tail(self) -> str:
        return bytes(self._stderr_tail).decode("utf-8", "replace").strip()


# ---------------------------------------------------------------------- helpers


def _request(
    call: PythonCall | Exec, workdir: str, env: dict[str, str], limits: Limits
) -> dict[str, Any]:
    if not isinstance(workdir, str) or not os.path.isabs(workdir):
        raise SandboxError(f"workdir must be an absolute path, got {workdir!r}")
    for k, v in env.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SandboxError(f"env must map str to str; got {k!r}: {type(v).__name__}")
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise SandboxError(f"env variable {k!r} has an invalid name or value")
    if not isinstance(limits, Limits):
        raise SandboxError(f"limits must be a Limits, got {type(limits).__name__}")
    wire_call: dict[str, Any]
    if isinstance(call, PythonCall):
        if not isinstance(call.payload, bytes | bytearray | memoryview):
            raise SandboxError("PythonCall.payload must be bytes (JSON text)")
        if not isinstance(call.import_dir, str) or not os.path.isabs(call.import_dir):
            raise SandboxError(
                f"PythonCall.import_dir must be an absolute path, got {call.import_dir!r}"
            )
        wire_call = {
            "kind": "python",
            "import_dir": call.import_dir,
            "module": call.module,
            "function": call.function,
        }
    elif isinstance(call, Exec):
        if not call.argv or not all(isinstance(a, str) for a in call.argv):
            raise SandboxError(f"Exec.argv must be a non-empty list of str, got {call.argv!r}")
        wire_call = {"kind": "exec", "argv": list(call.argv)}
    else:
        raise SandboxError(f"call must be a PythonCall or an Exec, got {type(call).__name__}")
    return {
        "op": "spawn",
        "call": wire_call,
        "workdir": workdir,
        "env": dict(env),
        "limits": limits.to_wire(),
    }


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # mark retrieved; the awaiting caller may have been cancelled


async def _writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_writer(fd, ready)
    try:
        await fut
    finally:
        loop.remove_writer(fd)


def _is_session_leader(pid: int) -> bool:
    """Whether host pid ``pid`` exists and leads its own session and process group."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        pgid, sid = int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        return False
    return pgid == pid and sid == pid


async def _probe_python(python: str) -> dict[str, Any]:
    """The interpreter's prefixes, real executable path and stdlib ``sys.path`` (cached)."""
    if python in _probe_cache:
        return _probe_cache[python]
    try:
        proc = await asyncio.create_subprocess_exec(
            python,
            "-I",
            "-S",
            "-c",
            _PROBE,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={},
        )
    except OSError as exc:
        raise SandboxError(f"cannot run python {python!r}: {exc}") from exc
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise SandboxError(
            f"python {python!r} exited {proc.returncode} when probed",
            detail=err.decode("utf-8", "replace"),
        )
    info: dict[str, Any] = json.loads(out)
    _probe_cache[python] = info
    return info
