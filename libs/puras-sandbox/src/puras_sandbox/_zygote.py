"""The zygote: a warm fork server, run as ``python -I -S _zygote.py CONFIG_JSON``.

Standard library only, and never imported by the platform: it runs in its own interpreter
(possibly as another uid, possibly inside bubblewrap) and talks to :class:`ForkServer` over
an inherited Unix stream socket.

Framing, both ways: ``struct "!II"`` (json_len, blob_len), then ``json_len`` bytes of UTF-8
JSON, then ``blob_len`` opaque bytes. Requests that carry file descriptors (``spawn``) send
them with SCM_RIGHTS on the first byte of the frame; descriptors are queued in arrival
order and each ``spawn`` takes its ``nfds`` from the front of the queue.

Config (argv[1], JSON): {"fd", "sys_path", "preload", "name", "prefork", "hold_limits",
"spawn_exec"}. ``hold_limits``: limits the zygote takes for itself once ready, so that every
process it starts inherits them (a sandbox that serves one job). ``spawn_exec``: a command
(``exec``) asking for exactly those limits is started with ``posix_spawn`` rather than forked;
only for a zygote in a pid namespace of its own, which ends every process in it with the zygote
(no parent-death signal can be set between a vfork and its exec).

Requests:   {"op": "spawn", "id", "nfds": 3, "call", "workdir", "env", "limits"} + payload
            {"op": "kill", "pid", "sig"}          (signals the child's process group)
            {"op": "shutdown"}                    (SIGKILL every child group, reap, exit)
Replies:    {"t": "ready", "pid", "uid", "gid", "groups"}
            {"t": "fatal", "error"}               (start-up failed; the zygote exits 1)
            {"t": "spawned", "id", "pid"} | {"t": "spawn_failed", "id", "errno", "error"}
            {"t": "exit", "pid", "exit_code", "signal", "cpu_ms"}
                                                  (cpu_ms: the job's user + system CPU time,
                                                  its waited-for descendants' included)
"""

from __future__ import annotations

import importlib
import io
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys

TYPE_CHECKING = False  # typing is not imported at run time: this script stays lean
if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import Any

    Msg = dict[str, Any]

HDR = struct.Struct("!II")
RESULT_FD = 3
_OUR_FILE = __file__
_TB_LINES = 20

_RLIMITS = {
    "cpu_seconds": resource.RLIMIT_CPU,
    "address_space_bytes": resource.RLIMIT_AS,
    "open_files": resource.RLIMIT_NOFILE,
    "processes": resource.RLIMIT_NPROC,
    "file_size_bytes": resource.RLIMIT_FSIZE,
}


def _cpu_ms(usage: resource.struct_rusage) -> int:
    """User and system CPU time of a reaped child (and of the descendants it waited for)."""
    return round((usage.ru_utime + usage.ru_stime) * 1000)


def _log(text: str) -> None:
    try:
        sys.stderr.write(f"puras-zygote[{os.getpid()}]: {text}\n")
        sys.stderr.flush()
    except Exception:
        pass


_LIBC: Any = None
_ZYGOTE_PID: int | None = None


def _no_new_privs() -> None:
    """Load libc (for prctl) and set PR_SET_NO_NEW_PRIVS, so no child can gain privileges
    through a setuid binary; become a child subreaper, so a process that leaves its job
    (a double fork, ``setsid``) is re-parented here rather than to init, where it can be found
    and killed (:meth:`Zygote.sweep`); and not dumpable (``PR_SET_DUMPABLE`` 0, inherited by
    every fork), so another process of the same uid (another job) can neither read this one's
    ``/proc/<pid>/environ``, ``mem`` or ``fd`` nor ptrace it. ``execve`` of a readable program
    makes a process dumpable again: an exec'd job is shielded by its namespaces instead."""
    global _LIBC
    try:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        _LIBC.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        _LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except Exception as exc:  # pragma: no cover - best effort
        _log(f"prctl failed: {exc!r}")


def _stat_fields(pid: int | str) -> list[bytes]:
    """The fields of /proc/<pid>/stat after the command name (ppid at 1, session at 3)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rfind(b")") + 2 :].split()


def _children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (a single-threaded process)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:  # kernels without CONFIG_PROC_CHILDREN: scan
        found: list[int] = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if int(_stat_fields(name)[1]) == pid:
                        found.append(int(name))
                except (OSError, IndexError, ValueError):
                    pass
        return found


# ----------------------------------------------------------------------------- child side


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _tb_tail(exc: BaseException) -> str:
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _OUR_FILE:
        tb = tb.tb_next
    lines = "".join(traceback.format_exception(type(exc), exc, tb)).splitlines()
    return "\n".join(lines[-_TB_LINES:])


def _error(type_name: str, message: str, traceback_text: str = "") -> Msg:
    return {
        "ok": False,
        "error": {"type": type_name, "message": message, "traceback": traceback_text},
    }


def _apply_limits(limits: dict[str, int]) -> None:
    for key, value in limits.items():
        res = _RLIMITS[key]
        _soft, hard = resource.getrlimit(res)
        want_hard = value + 1 if key == "cpu_seconds" else value
        if hard != resource.RLIM_INFINITY:
            want_hard = min(want_hard, hard)
            value = min(value, hard)
        resource.setrlimit(res, (value, want_hard))


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _run_python(call: Msg, payload: bytes) -> tuple[int, Msg]:
    """Run the user's function; returns (exit code, result dict)."""
    function = call["function"]
    value = None
    try:
        inputs = json.loads(payload)
        sys.path.insert(0, call["import_dir"])
        sys.argv = [call["module"]]
        module = importlib.import_module(call["module"])
        fn = getattr(module, function)
        value = fn(inputs)
        if hasattr(value, "__await__"):
            import asyncio

            value = asyncio.run(_await(value))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        result = _error("SystemExit", f"{function}() called sys.exit({exc.code!r})")
        return code, result
    except BaseException as exc:
        tail = _tb_tail(exc)
        if not getattr(exc, "puras_quiet", False):  # puras.request_input's question is no error
            try:
                sys.stderr.write(tail + "\n")
            except Exception:
                pass
        return 1, _error(type(exc).__name__, str(exc), tail)
    return 0, {"ok": True, "value": value}


def _encode_result(result: Msg, function: str) -> tuple[bytes, bool]:
    """Serialise ``result``; returns (bytes, replaced_by_ResultNotJSON)."""
    try:
        return json.dumps(result, allow_nan=False, ensure_ascii=False).encode("utf-8"), False
    except (TypeError, ValueError, RecursionError) as exc:
        value = result.get("value") if result.get("ok") else None
        found = type(value).__name__
        msg = (
            f"{function}() returned a value that is not JSON-serialisable "
            f"(top-level type {found}): {exc}"
        )
        err = _error("ResultNotJSON", msg)
        return json.dumps(err, ensure_ascii=False).encode("utf-8"), True


_ALL_SIGNALS = signal.valid_signals()


def _fork() -> int:
    """``os.fork()`` with every signal blocked in the child until :func:`_detach`.

    Between the fork and ``setsid`` the child still has the zygote's signal handlers (a
    SIGTERM there would only set the zygote's stop flag) and no process group of its own; a
    signal sent in that window waits, pending, until the child's dispositions are a fresh
    Python's, so none is lost.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return pid


def _detach() -> None:
    """First steps of every child: own session, SIGKILL if the zygote dies, the signal
    dispositions of a fresh Python, then the signals that arrived since the fork."""
    os.setsid()
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != _ZYGOTE_PID:  # the zygote died before prctl took effect
            os._exit(70)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _child(msg: Msg, payload: bytes, fds: list[int], detached: bool = False) -> None:
    """Runs in the forked child; never returns."""
    code = 126
    call = msg["call"]
    is_python = call["kind"] == "python"
    stage = "setup"
    try:
        if not detached:
            _detach()
        out_fd, err_fd, res_fd = fds
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        if res_fd != RESULT_FD:
            os.dup2(res_fd, RESULT_FD)
        nul = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nul, 0)
        os.closerange(RESULT_FD + 1, 1 << 20)
        os.set_inheritable(RESULT_FD, False)
        stage = "rlimits"
        _apply_limits(msg["limits"])
        stage = f"chdir({msg['workdir']!r})"
        os.chdir(msg["workdir"])
        stage = "environment"
        os.environ.clear()
        os.environ.update(msg["env"])
        stage = "run"
        if is_python:
            code, result = _run_python(call, payload)
            data, not_json = _encode_result(result, call["function"])
            if not_json and code == 0:
                code = 1
            _flush_std()
            try:
                _write_all(RESULT_FD, data)
            except OSError:
                pass
        else:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            os.close(RESULT_FD)
            argv = call["argv"]
            _flush_std()
            try:
                os.execvpe(argv[0], argv, msg["env"])
            except OSError as exc:
                os.write(2, f"puras-sandbox: cannot exec {argv[0]!r}: {exc}\n".encode())
                code = 127
    except BaseException as exc:
        text = f"puras-sandbox: {stage} failed: {type(exc).__name__}: {exc}"
        try:
            os.write(2, (text + "\n").encode())
        except OSError:
            pass
        if is_python:
            try:
                err = _error("SandboxSetupError", f"{stage} failed: {type(exc).__name__}: {exc}")
                _write_all(RESULT_FD, json.dumps(err).encode())
            except Exception:
                pass
        code = 126
    finally:
        _flush_std()
        os._exit(code)


def _ignored_signals() -> list[int]:
    """The signals this process ignores: ignoring survives ``execve``, handlers do not."""
    return [s for s in _ALL_SIGNALS if signal.getsignal(s) == signal.SIG_IGN]


def _spawn_exec(msg: Msg, fds: list[int], home: str, ignored: list[int]) -> int | None:
    """Start an ``exec`` call with ``posix_spawn`` (a vfork: nothing of the zygote is copied)
    in a session of its own, with the dispositions and the empty signal mask of a fresh
    program, stdin from /dev/null and its pipes as stdout and stderr. Its limits are the ones
    the zygote holds, and the zygote's pid namespace ends it with the zygote. Returns its pid,
    or None when it cannot be spawned (no such workdir or program, say): the fork path then
    runs it and reports why on its stderr, as for any call."""
    argv = msg["call"]["argv"]
    out_fd, err_fd, _result_fd = fds  # the result pipe is close-on-exec: a command has none
    try:
        os.chdir(msg["workdir"])
    except (OSError, ValueError):
        return None
    try:
        return os.posix_spawn(
            argv[0],
            argv,
            msg["env"],
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_fd, 1),
                (os.POSIX_SPAWN_DUP2, err_fd, 2),
            ],
            setsid=True,
            setsigmask=(),
            setsigdef=ignored,
        )
    except (OSError, ValueError):
        return None
    finally:
        os.chdir(home)


def _close_on_exec_all() -> None:
    """Mark every descriptor above stderr close-on-exec: a spawned program inherits nothing
    of the zygote's (a forked child closes them itself)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed by now


# ------------------------------------------------------------------------ spare child
#
# A fork costs the child hundreds of copy-on-write page faults the first time it touches
# the interpreter's objects (environ, json, the import system...). The zygote therefore
# keeps one child forked *ahead* of the next job: it detaches, closes every inherited fd,
# runs the same code paths once on dummy data (so those pages are already private) and
# then blocks on its own socket. A spawn hands the job (frame + fds) to it; the zygote
# forks the next spare afterwards.

WARM_MODULE = "_zygote_warm"


def _warm_up() -> None:
    os.chdir("/")
    os.environ.clear()
    os.environ.update({"PURAS_SANDBOX_WARM": "1"})
    for res in _RLIMITS.values():
        resource.getrlimit(res)
    inputs = json.loads(b'{"a": [1, 2.5, "x", null, true], "b": {"c": "d"}}')
    json.dumps({"ok": True, "value": inputs}, allow_nan=False, ensure_ascii=False).encode()
    here = os.path.dirname(os.path.abspath(_OUR_FILE))
    sys.path.insert(0, here)
    try:
        module = importlib.import_module(WARM_MODULE)
        value = module.run(inputs)
        hasattr(value, "__await__")
    except Exception:
        pass
    finally:
        try:
            sys.path.remove(here)
        except ValueError:
            pass
        sys.path_importer_cache.pop(here, None)
        sys.modules.pop(WARM_MODULE, None)
    try:
        sys.stdout.write("\n")  # still the zygote's stdout (/dev/null) at this point
        _flush_std()
    except Exception:
        pass


def _recv_frame(sock: socket.socket) -> tuple[Msg, bytes, list[int]] | None:
    """Blocking read of one frame (and the fds sent with it) from ``sock``; None at EOF."""
    buf = bytearray()
    fds: list[int] = []
    need = HDR.size
    while len(buf) < need:
        data, got, _flags, _ = socket.recv_fds(sock, max(need - len(buf), 1 << 16), 32)
        fds.extend(got)
        if not data:
            return None
        buf += data
        if len(buf) >= HDR.size:
            jl, bl = HDR.unpack_from(buf)
            need = HDR.size + jl + bl
    jl, bl = HDR.unpack_from(buf)
    msg = json.loads(bytes(buf[HDR.size : HDR.size + jl]))
    return msg, bytes(buf[HDR.size + jl : HDR.size + jl + bl]), fds


def _spare_main(sock_fd: int) -> None:
    """Runs in a pre-forked spare; never returns."""
    code = 0
    try:
        _detach()
        os.closerange(3, sock_fd)
        os.closerange(sock_fd + 1, 1 << 20)
        _warm_up()
        sock = socket.socket(fileno=sock_fd)
        _KEEP.append(sock)
        got = _recv_frame(sock)
        if got is None:
            os._exit(0)
        msg, blob, fds = got
        _child(msg, blob, fds, detached=True)
    except BaseException as exc:
        _log(f"spare child failed: {type(exc).__name__}: {exc}")
        code = 70
    finally:
        os._exit(code)


_KEEP: list[socket.socket] = []


# ---------------------------------------------------------------------------- zygote side


class Zygote:
    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.buf = bytearray()
        self.fdq: list[int] = []
        self.children: set[int] = set()
        self.stop = False
        self.use_spare = True
        self.spare: tuple[int, socket.socket] | None = None  # the pre-forked child
        self.held: dict[str, int] | None = None
        """The limits the zygote holds itself (``hold_limits``), if any."""
        self.spawn_exec = False
        self.home = os.getcwd()
        self.ignored: list[int] = []

    def make_spare(self) -> None:
        if not self.use_spare or self.spare is not None or self.stop:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        _flush_std()
        try:
            pid = _fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            _log(f"cannot fork a spare child: {exc}")
            return
        if pid == 0:
            _spare_main(theirs.fileno())
        theirs.close()
        self.spare = (pid, ours)

    def drop_spare(self) -> None:
        if self.spare is None:
            return
        _pid, sock = self.spare
        self.spare = None
        sock.close()  # EOF: the spare exits by itself; reap() collects it

    def hand_to_spare(self, msg: Msg, blob: bytes, fds: list[int]) -> int | None:
        """Give the job to the spare; its pid, or None when there is no usable spare."""
        if self.spare is None:
            return None
        pid, sock = self.spare
        self.spare = None
        body = json.dumps(msg, separators=(",", ":")).encode()
        try:
            socket.send_fds(sock, [HDR.pack(len(body), len(blob)) + body], fds)
            if blob:
                sock.sendall(blob)
        except OSError as exc:
            _log(f"spare child {pid} unusable ({exc}); forking directly")
            sock.close()
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            return None
        sock.close()
        return pid

    def send(self, obj: Msg) -> None:
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.ctl.sendall(HDR.pack(len(data), 0) + data)

    # -- children
    def report(self, pid: int, status: int, cpu_ms: int = 0) -> None:
        if self.spare is not None and self.spare[0] == pid:
            self.drop_spare()  # the spare died on its own; a new one is made when idle
        if pid not in self.children:
            return
        self.children.discard(pid)
        if os.WIFSIGNALED(status):
            code, sig = None, os.WTERMSIG(status)
        else:
            code, sig = os.waitstatus_to_exitcode(status), None
        self.send({"t": "exit", "pid": pid, "exit_code": code, "signal": sig, "cpu_ms": cpu_ms})

    def sweep(self, everything: bool = False) -> None:
        """Kill processes that left their job: children of the zygote (a subreaper) that are
        neither a job, nor the spare, nor still in a running job's session. Their own children
        are re-parented here when they die, and swept at the next reap."""
        keep: set[int] = set() if everything else set(self.children)
        if self.spare is not None and not everything:
            keep.add(self.spare[0])
        for pid in _children_of(os.getpid()):
            if pid in keep:
                continue
            try:
                if not everything and int(_stat_fields(pid)[3]) in self.children:
                    continue  # still in a running job's session: ends with it
            except (OSError, IndexError, ValueError):
                continue
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def reap(self) -> None:
        try:
            self._reap()
        finally:
            self.sweep()

    def _reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            pid = info.si_pid
            # The leader is a zombie, so its pid (= the group id) cannot have been reused:
            # clear whatever the job left behind in its group, then reap.
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                _, status, usage = os.wait4(pid, 0)
            except ChildProcessError:
                continue
            self.report(pid, status, _cpu_ms(usage))

    def kill_all(self) -> None:
        if self.spare is not None:
            pid = self.spare[0]
            self.drop_spare()
            try:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in list(self.children):
            try:
                _, status, usage = os.wait4(pid, 0)
            except ChildProcessError:
                self.children.discard(pid)
                continue
            try:
                self.report(pid, status, _cpu_ms(usage))
            except OSError:
                self.children.discard(pid)
        self.sweep(everything=True)  # whatever escaped its job: no process outlives the zygote

    # -- requests
    def on_spawn(self, msg: Msg, blob: bytes) -> None:
        n = msg["nfds"]
        if len(self.fdq) < n:
            self.send(
                {
                    "t": "spawn_failed",
                    "id": msg["id"],
                    "errno": None,
                    "error": f"protocol error: spawn needs {n} fds, {len(self.fdq)} queued",
                }
            )
            return
        fds, self.fdq = self.fdq[:n], self.fdq[n:]
        pid = None
        if (
            self.spawn_exec
            and msg["call"]["kind"] == "exec"
            and msg["limits"] == self.held
            and "/" in msg["call"]["argv"][0]  # posix_spawn would search the zygote's PATH
        ):
            pid = _spawn_exec(msg, fds, self.home, self.ignored)
        if pid is None:
            pid = self.hand_to_spare(msg, blob, fds)
        if pid is None:
            _flush_std()
            try:
                pid = _fork()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                self.send(
                    {
                        "t": "spawn_failed",
                        "id": msg["id"],
                        "errno": exc.errno,
                        "error": f"fork failed: {exc}",
                    }
                )
                return
            if pid == 0:
                _child(msg, blob, fds)
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        self.send({"t": "spawned", "id": msg["id"], "pid": pid})

    def on_kill(self, msg: Msg) -> None:
        pid, sig = int(msg["pid"]), int(msg["sig"])
        if pid not in self.children:
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            # Forked but not yet its own group (setsid is its first step), so it has no
            # children either: signal the process. The pid is not reaped, so still ours,
            # and the signal stays blocked until the child's dispositions are reset.
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        except OSError:
            pass

    def handle(self, msg: Msg, blob: bytes) -> None:
        op = msg.get("op")
        if op == "spawn":
            self.on_spawn(msg, blob)
        elif op == "kill":
            self.on_kill(msg)
        elif op == "shutdown":
            self.stop = True
        else:
            _log(f"unknown request {op!r}")

    def read_ctl(self) -> bool:
        try:
            data, fds, flags, _ = socket.recv_fds(self.ctl, 1 << 18, 32)
        except InterruptedError:
            return True
        except OSError as exc:
            _log(f"control socket read failed: {exc}")
            return False
        if fds:
            for fd in fds:
                os.set_inheritable(fd, False)
            self.fdq.extend(fds)
        if flags & getattr(socket, "MSG_CTRUNC", 0):
            _log("control message truncated: file descriptors were lost")
        if not data:
            return False
        self.buf += data
        buf = self.buf
        while len(buf) >= HDR.size:
            jl, bl = HDR.unpack_from(buf)
            end = HDR.size + jl + bl
            if len(buf) < end:
                break
            msg = json.loads(bytes(buf[HDR.size : HDR.size + jl]))
            blob = bytes(buf[HDR.size + jl : end])
            del buf[:end]
            self.handle(msg, blob)
        return True

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)

        def on_term(*_: object) -> None:
            self.stop = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.ignored = _ignored_signals()
        sel = selectors.PollSelector()  # no kernel object to share with children
        ctl_fd = self.ctl.fileno()
        sel.register(ctl_fd, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        self.make_spare()  # so that the very first job already finds a warm child
        self.send(
            {
                "t": "ready",
                "pid": os.getpid(),
                "uid": os.getuid(),
                "gid": os.getgid(),
                "groups": os.getgroups(),
            }
        )
        try:
            while not self.stop:
                want_spare = self.use_spare and self.spare is None
                events = sel.select(0 if want_spare else None)
                if not events and want_spare:
                    # Idle: pending requests and exits go first, then the next spare.
                    self.make_spare()
                    continue
                for key, _ev in events:
                    if key.fd == wake_r:
                        try:
                            while os.read(wake_r, 4096):
                                pass
                        except BlockingIOError:
                            pass
                        self.reap()
                    elif key.fd == ctl_fd:
                        if not self.read_ctl():
                            self.stop = True
                    if self.stop:
                        break
        except BrokenPipeError:
            pass
        finally:
            self.kill_all()


def main() -> None:
    global _ZYGOTE_PID
    _ZYGOTE_PID = os.getpid()
    cfg = json.loads(sys.argv[1])
    ctl = socket.socket(fileno=int(cfg["fd"]))
    ctl.setblocking(True)
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper):
            continue
        try:
            stream.reconfigure(encoding="utf-8", errors="backslashreplace", line_buffering=True)
        except Exception:
            pass
    stdlib = list(sys.path)
    sys.path[:] = [str(p) for p in cfg.get("sys_path", [])] + stdlib
    _no_new_privs()
    zygote = Zygote(ctl)
    zygote.use_spare = bool(cfg.get("prefork", True))
    for name in cfg.get("preload", []):
        try:
            importlib.import_module(name)
        except BaseException as exc:
            zygote.send(
                {"t": "fatal", "error": f"preload of {name!r} failed: {type(exc).__name__}: {exc}"}
            )
            sys.exit(1)
    importlib.invalidate_caches()
    held = cfg.get("hold_limits")
    if held is not None:
        try:
            _apply_limits(held)
        except (OSError, ValueError) as exc:
            zygote.send({"t": "fatal", "error": f"cannot hold the job's limits: {exc}"})
            sys.exit(1)
        zygote.held = held
        zygote.spawn_exec = bool(cfg.get("spawn_exec")) and hasattr(os, "posix_spawn")
        if zygote.spawn_exec:
            _close_on_exec_all()
    import gc

    gc.collect()
    gc.freeze()
    zygote.serve()
    # Every child is reaped and reported by now. The interpreter's own shutdown (module
    # teardown, finalizers) would only hold up the caller's wait for the exit: a one-job
    # sandbox is closed at the end of every agent job, before its drive is saved.
    _flush_std()
    os._exit(0)


if __name__ == "__main__":
    main()
