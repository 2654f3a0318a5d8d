"""Value types and errors of :mod:`puras_sandbox` (standard library only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Exec",
    "ForkServerDied",
    "Isolation",
    "Limits",
    "Outcome",
    "PythonCall",
    "SandboxError",
    "SpawnFailed",
]


@dataclass(frozen=True)
class Limits:
    """Resource limits applied with ``setrlimit`` in the child before any user code runs.

    Each field sets both the soft and the hard limit (clamped to the hard limit the zygote
    already has, since an unprivileged process cannot raise it). ``None`` leaves the
    inherited limit as it is.

    * ``cpu_seconds`` -- ``RLIMIT_CPU``: the kernel sends ``SIGXCPU`` at the limit and
      ``SIGKILL`` one second later (the hard limit is ``cpu_seconds + 1``).
    * ``address_space_bytes`` -- ``RLIMIT_AS``: allocations past it fail (``MemoryError``).
    * ``open_files`` -- ``RLIMIT_NOFILE``: opening more fails with ``EMFILE``.
    * ``processes`` -- ``RLIMIT_NPROC``: note the kernel counts every process of the *real
      uid* (all jobs of all zygotes running as that uid), and ignores it for root.
    * ``file_size_bytes`` -- ``RLIMIT_FSIZE``: writing past it fails with ``EFBIG`` in Python
      (``SIGXFSZ`` is ignored there) and kills an exec'd program with ``SIGXFSZ``.
    """

    cpu_seconds: int | None = None
    address_space_bytes: int | None = None
    open_files: int | None = None
    processes: int | None = None
    file_size_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "cpu_seconds",
            "address_space_bytes",
            "open_files",
            "processes",
            "file_size_bytes",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Limits.{name} must be an int >= 0 or None, got {value!r}")

    def to_wire(self) -> dict[str, int]:
        """The limits that are set, as a JSON-able dict (field name -> value)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class PythonCall:
    """Import ``module`` from ``import_dir`` in the child and call ``function(inputs)``.

    ``import_dir`` is prepended to the child's ``sys.path`` (use an absolute path; it is the
    skill's directory). ``module`` may be dotted (``"tools.render"``). ``payload`` is the JSON
    text of the single argument (normally an object); the child parses it and passes the
    parsed value. If the function returns an awaitable (``async def run``), it is run to
    completion with :func:`asyncio.run`.
    """

    import_dir: str
    module: str
    function: str
    payload: bytes


@dataclass(frozen=True)
class Exec:
    """Replace the child with a program: ``os.execvpe(argv[0], argv, env)``.

    ``argv[0]`` without a slash is looked up on the ``PATH`` of the job's ``env``.
    """

    argv: list[str]


@dataclass(frozen=True)
class Isolation:
    """Bubblewrap policy for a zygote (``ForkServer(isolation=None)`` means no namespaces).

    The zygote runs inside ``bwrap --unshare-all`` with only the system directories
    (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, a minimal read-only ``/etc``), the python
    prefix, every ``sys_path`` entry and the paths below visible.

    * ``ro_binds`` -- extra host paths bound read-only at the same path (deployment dir,
      venv, SDK dir).
    * ``rw_binds`` -- host paths bound read-write at the same path (the root under which
      job workdirs are created).
    * ``network`` -- share the host network namespace (``True``) or get an empty one with
      only a loopback device (``False``).
    * ``egress_socket`` -- with ``network=False``: a Unix socket of the platform's egress
      proxy. Before the zygote starts, the sandbox listens on ``127.0.0.1:egress_port`` in its
      own network namespace and hands that listening socket to the proxy through this socket,
      so the port is the namespace's only way out (see :mod:`puras_sandbox._egress_listen`).
      The socket's directory is bound read-only.
    """

    ro_binds: tuple[str, ...] = ()
    rw_binds: tuple[str, ...] = ()
    network: bool = False
    egress_socket: str | None = None
    egress_port: int = 3128

    def __post_init__(self) -> None:
        if self.egress_socket is not None:
            if self.network:
                raise ValueError("Isolation.egress_socket needs network=False (an own namespace)")
            if not os.path.isabs(self.egress_socket):
                raise ValueError("Isolation.egress_socket must be an absolute path")
        if not 0 < self.egress_port < 65536:
            raise ValueError(f"Isolation.egress_port must be a TCP port, got {self.egress_port}")


@dataclass(frozen=True)
class Outcome:
    """How a child ended.

    * ``exit_code`` -- the exit status, or ``None`` when the child was killed by a signal.
    * ``signal`` -- the signal number that killed it, else ``None``.
    * ``result`` -- for :class:`PythonCall`: ``{"ok": True, "value": <parsed JSON>}`` or
      ``{"ok": False, "error": {"type", "message", "traceback"}}``; ``None`` when the child
      died without writing one, and always ``None`` for :class:`Exec`.
    * ``cpu_ms`` -- the user and system CPU time the child used, with that of the descendants
      it waited for (what a process left behind and the zygote killed is not counted).
    """

    exit_code: int | None
    signal: int | None
    result: dict[str, Any] | None = field(default=None)
    cpu_ms: int = 0

    @property
    def ok(self) -> bool:
        """True when the child exited 0 and (for a Python call) reported ``{"ok": True}``."""
        if self.exit_code != 0:
            return False
        return self.result is None or bool(self.result.get("ok"))


class SandboxError(Exception):
    """Base class of every error raised by :mod:`puras_sandbox`.

    ``name`` is the fork server's name (may be empty); ``detail`` is free text such as the
    tail of the zygote's stderr.
    """

    def __init__(self, message: str, *, name: str = "", detail: str = "") -> None:
        self.name = name
        self.detail = detail
        text = message
        if detail:
            text = f"{message}\n--- detail ---\n{detail}"
        super().__init__(text)


class ForkServerDied(SandboxError):
    """The zygote is gone (crashed, was killed, or was closed) while work was pending.

    ``pid`` is the zygote's (or bwrap's) host pid; ``exit_code`` / ``signal`` say how it
    ended when known; ``stderr_tail`` is the last bytes it wrote to stderr.
    """

    def __init__(
        self,
        *,
        name: str,
        pid: int | None,
        exit_code: int | None,
        signal: int | None,
        stderr_tail: str = "",
        reason: str = "",
    ) -> None:
        self.pid = pid
        self.exit_code = exit_code
        self.signal = signal
        self.stderr_tail = stderr_tail
        self.reason = reason
        how = (
            f"killed by signal {signal}"
            if signal is not None
            else f"exit code {exit_code}"
            if exit_code is not None
            else "status unknown"
        )
        label = f"fork server {name!r}" if name else "fork server"
        msg = f"{label} (pid {pid}) is gone: {how}"
        if reason:
            msg += f"; {reason}"
        super().__init__(msg, name=name, detail=stderr_tail)


class SpawnFailed(SandboxError):
    """The zygote could not fork a child (``errno`` is the OS error number, e.g. EAGAIN)."""

    def __init__(self, message: str, *, name: str = "", errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message, name=name)
