"""Helpers for the puras_sandbox tests (imported by them; conftest puts this dir on sys.path)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from puras_sandbox import PythonCall, bwrap_available

NOBODY = 65534
IS_ROOT = os.geteuid() == 0


def world_executable(path: str) -> bool:
    """Whether an unprivileged user can execute ``path`` (every parent traversable)."""
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        return False
    st = os.stat(real)
    if not st.st_mode & stat.S_IXOTH:
        return False
    parent = os.path.dirname(real)
    while True:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)


def _nobody_python() -> str | None:
    """A Python 3.11+ an unprivileged uid can run (the venv's may live under /root)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if world_executable(candidate):
            return candidate
    return None


NOBODY_PYTHON = _nobody_python()

needs_root = pytest.mark.skipif(not IS_ROOT, reason="dropping to uid 65534 needs root")
needs_nobody_python = pytest.mark.skipif(
    NOBODY_PYTHON is None,
    reason="no python interpreter executable by uid 65534 (the venv's lives under /root)",
)


def skip_without_bwrap(uid: int | None = None) -> None:
    """Skip the calling test, saying why, when bubblewrap cannot be used here."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap")
    if not bwrap_available(uid, uid):
        who = f" as uid {uid}" if uid is not None else ""
        pytest.skip(
            f"bwrap is installed but cannot create a sandbox{who} here "
            "(unprivileged user namespaces disabled?)"
        )


def write_skill(directory: Path, source: str, module: str = "main") -> Path:
    """Write ``source`` as ``module`` (dots make packages) under ``directory``."""
    parts = module.split(".")
    target = directory
    for pkg in parts[:-1]:
        target = target / pkg
        target.mkdir(parents=True, exist_ok=True)
        (target / "__init__.py").touch()
    directory.mkdir(parents=True, exist_ok=True)
    path = target / f"{parts[-1]}.py"
    path.write_text(textwrap.dedent(source))
    return path


def call(
    directory: Path | str, payload: bytes = b"{}", module: str = "main", function: str = "run"
) -> PythonCall:
    """A PythonCall of ``module.function`` in ``directory``."""
    return PythonCall(import_dir=str(directory), module=module, function=function, payload=payload)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """Live (non-zombie) host processes whose process group is ``pgid``: (pid, state)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        state, pg = fields[0].decode(), int(fields[2])
        if pg == pgid and state not in ("Z", "X"):
            found.append((int(name), state))
    return found


def processes_with_arg(marker: str) -> list[int]:
    """Live host processes that have ``marker`` as one of their argv entries."""
    found = []
    needle = marker.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        state = data[data.rfind(b")") + 2 :].split()[0]
        if needle in argv and state not in (b"Z", b"X"):
            found.append(int(name))
    return found


async def eventually(check: Callable[[], bool], within: float = 10.0) -> bool:
    """Poll ``check`` until it is true or ``within`` seconds pass (not a speed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if check():
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)


def nobody_dir(parent: Path, name: str) -> Path:
    """A directory owned by uid/gid 65534 (a job workdir for an unprivileged child)."""
    path = parent / name
    path.mkdir(parents=True, exist_ok=True)
    if IS_ROOT:
        os.chown(path, NOBODY, NOBODY)
    return path
