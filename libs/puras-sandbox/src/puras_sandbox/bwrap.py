"""Bubblewrap support: is ``bwrap`` usable here, and the command line for a zygote."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from typing import TypedDict

from ._types import Isolation, SandboxError

EGRESS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_egress_listen.py")
"""Run before the zygote in a sandbox with an egress socket; see :mod:`._egress_listen`."""

__all__ = [
    "EGRESS_SCRIPT",
    "ETC_FILES",
    "SANDBOX_USER",
    "SYSTEM_DIRS",
    "accounts",
    "bwrap_available",
    "bwrap_command",
    "bwrap_path",
]

#: Top-level system directories bound read-only (or recreated as symlinks) when present.
SYSTEM_DIRS: tuple[str, ...] = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")

#: The only parts of the host's ``/etc`` a sandbox sees (read-only, when present): name
#: resolution, TLS roots, time zone, the dynamic linker's cache and ``alternatives``. Its
#: ``/etc/passwd`` and ``/etc/group`` are its own (:func:`accounts`), not the host's.
ETC_FILES: tuple[str, ...] = (
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
    "/etc/crypto-policies",
    "/etc/alternatives",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/debian_version",
)

#: The name a sandbox's own uid has in its ``/etc/passwd`` (and its gid in ``/etc/group``).
SANDBOX_USER = "puras"

_NOBODY = 65534


def accounts(uid: int, gid: int) -> dict[str, bytes]:
    """A sandbox's ``/etc/passwd`` and ``/etc/group``: root, the sandbox's own ``uid``/``gid``
    (:data:`SANDBOX_USER`) and nobody (which unmapped owners show as), and nothing of the host's.

    A process that looks its uid up (bash at every start, ``id``, ``whoami``, ``ls -l``) finds it
    in the first file the C library reads, rather than missing it there and loading the next
    name service, and the host's accounts stay its own."""
    users = {0: ("root", 0, "/root"), _NOBODY: ("nobody", _NOBODY, "/nonexistent")}
    users.setdefault(uid, (SANDBOX_USER, gid, "/tmp"))
    groups = {0: "root", _NOBODY: "nogroup"}
    groups.setdefault(gid, SANDBOX_USER)
    shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    passwd = "".join(
        f"{name}:x:{u}:{g}:{name}:{home}:{shell if u == uid else '/usr/sbin/nologin'}\n"
        for u, (name, g, home) in sorted(users.items())
    )
    group = "".join(f"{name}:x:{g}:\n" for g, name in sorted(groups.items()))
    return {"/etc/passwd": passwd.encode(), "/etc/group": group.encode()}


_available: dict[tuple[int | None, int | None], bool] = {}


def bwrap_path() -> str | None:
    """Absolute path of ``bwrap`` on ``PATH`` (or the usual system locations), else None."""
    found = shutil.which("bwrap")
    if found:
        return found
    for candidate in ("/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class IdKwargs(TypedDict, total=False):
    """What :func:`_id_kwargs` may pass to ``subprocess``: a hook that drops privileges."""

    preexec_fn: Callable[[], None]


def run_as(uid: int | None, gid: int | None) -> tuple[int, int] | None:
    """The (uid, gid) a process must be switched to, by root, to run as ``uid``/``gid``; None
    when this process already runs as them."""
    if uid is None and gid is None:
        return None
    uid = os.getuid() if uid is None else uid
    gid = uid if gid is None else gid
    if os.getuid() == uid and os.getgid() == gid and os.geteuid() != 0:
        return None
    if os.geteuid() != 0:
        raise SandboxError(
            f"running as uid {uid} / gid {gid} needs root; this process is uid {os.getuid()}"
        )
    return uid, gid


def _id_kwargs(uid: int | None, gid: int | None) -> IdKwargs:
    """Process-creation keyword arguments that run the process as ``uid``/``gid`` with no extra
    groups (see :func:`id_kwargs`)."""
    return id_kwargs(run_as(uid, gid))


def id_kwargs(ids: tuple[int, int] | None) -> IdKwargs:
    """Process-creation keyword arguments that switch to ``ids`` (uid, gid, from
    :func:`run_as`) with no extra groups. A ``preexec_fn`` rather than ``user=``/``group=``:
    uvloop's subprocess support accepts the former only, and the services run on uvloop."""
    if ids is None:
        return {}
    uid, gid = ids

    def drop_privileges() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return {"preexec_fn": drop_privileges}


def bwrap_available(uid: int | None = None, gid: int | None = None) -> bool:
    """Whether ``bwrap`` is installed and can create an ``--unshare-all`` sandbox.

    With ``uid``/``gid`` (only meaningful when this process is root) the probe runs as that
    user, which is how :class:`~puras_sandbox.ForkServer` starts bwrap when given ids; that
    needs unprivileged user namespaces. The answer is cached per ``(uid, gid)``.
    """
    key = (uid, gid)
    if key in _available:
        return _available[key]
    ok = False
    exe = bwrap_path()
    if exe is not None:
        argv = [
            exe,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ]
        if uid is not None:
            argv += ["--uid", str(uid), "--gid", str(gid if gid is not None else uid)]
        argv += ["--", "/bin/sh", "-c", "exit 0"]
        # A loaded host may be slow to start the probe, or fail it once (no memory, no pid
        # for a moment): it is tried again before the answer, which is kept, is no.
        for timeout in (20, 120):
            try:
                res = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=timeout,
                    cwd="/",
                    **_id_kwargs(uid, gid),
                )
                ok = res.returncode == 0
            except (OSError, subprocess.SubprocessError, SandboxError):
                ok = False
            if ok:
                break
    _available[key] = ok
    return ok


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p])


def _plan_binds(binds: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Order ``(mode, path)`` binds parent-first and drop the ones an ancestor already covers.

    ``mode`` is ``"ro"``, ``"ro-try"`` or ``"rw"``. A path under an emitted ancestor of the
    same writability is skipped; a rw path under a ro one (or the reverse) is kept, after it.
    """
    unique: dict[str, str] = {}
    for mode, path in binds:
        path = os.path.normpath(path)
        prev = unique.get(path)
        # rw wins over ro; a required ro wins over ro-try.
        if prev is None or mode == "rw" or (prev == "ro-try" and mode == "ro"):
            unique[path] = mode
    emitted: list[tuple[str, str]] = []
    for path in sorted(unique, key=lambda p: (_depth(p), p)):
        mode = unique[path]
        deepest: tuple[str, str] | None = None
        for emode, epath in emitted:
            if path.startswith(epath.rstrip("/") + "/") and (
                deepest is None or _depth(epath) > _depth(deepest[1])
            ):
                deepest = (emode, epath)
        if deepest is not None and (deepest[0] == "rw") == (mode == "rw"):
            continue
        emitted.append((mode, path))
    return emitted


def bwrap_command(
    *,
    bwrap: str,
    isolation: Isolation,
    python: str,
    python_paths: Sequence[str],
    sys_path: Sequence[str],
    zygote_files: Sequence[str],
    uid: int | None,
    gid: int | None,
    hostname: str = "puras-sandbox",
    data: Sequence[tuple[int, str]] = (),
) -> list[str]:
    """The ``bwrap ... --`` prefix that runs ``python`` inside the sandbox for a zygote.

    ``python_paths`` are the interpreter's own directories (prefix, stdlib) to bind
    read-only; ``zygote_files`` are the zygote's own files (bound read-only, alone);
    ``data`` are files made from a descriptor's contents, read-only (``(fd, path)``: the
    descriptor must reach bwrap, which reads it to its end).
    Raises :class:`SandboxError` when a ``ro_binds``/``rw_binds`` path does not exist on
    the host.
    """
    for kind, paths in (("ro_binds", isolation.ro_binds), ("rw_binds", isolation.rw_binds)):
        for p in paths:
            if not os.path.isabs(p):
                raise SandboxError(f"Isolation.{kind} entries must be absolute, got {p!r}")
            if not os.path.exists(p):
                raise SandboxError(f"Isolation.{kind} path {p!r} does not exist on the host")
    argv = [bwrap, "--unshare-all"]
    if isolation.network:
        argv.append("--share-net")
    argv += ["--die-with-parent", "--new-session", "--hostname", hostname]
    if uid is not None:
        argv += ["--uid", str(uid), "--gid", str(gid if gid is not None else uid)]
    argv += ["--cap-drop", "ALL"]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/dev/shm",
        "--tmpfs",
        "/tmp",
        "--dir",
        "/var/tmp",
    ]
    for f in ETC_FILES:
        if os.path.lexists(f):
            argv += ["--ro-bind-try", f, f]
    for fd, path in data:
        argv += ["--ro-bind-data", str(fd), path]
    binds: list[tuple[str, str]] = []
    binds += [("ro-try", p) for p in python_paths if os.path.isabs(p)]
    binds += [("ro-try", p) for p in sys_path if os.path.isabs(p)]
    binds += [("ro", p) for p in zygote_files]
    binds += [("ro", p) for p in isolation.ro_binds]
    binds += [("rw", p) for p in isolation.rw_binds]
    if isolation.egress_socket is not None:
        binds += [("ro", EGRESS_SCRIPT), ("ro", os.path.dirname(isolation.egress_socket))]
    system = {d for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)}
    for mode, path in _plan_binds([("ro", d) for d in system] + binds):
        if path in system and mode != "rw":
            continue  # already emitted above
        flag = {"ro": "--ro-bind", "ro-try": "--ro-bind-try", "rw": "--bind"}[mode]
        argv += [flag, path, path]
    argv += ["--chdir", "/", "--"]
    if isolation.egress_socket is not None:
        argv += [python, "-I", "-S", EGRESS_SCRIPT]
        argv += [isolation.egress_socket, str(isolation.egress_port)]
    return argv
