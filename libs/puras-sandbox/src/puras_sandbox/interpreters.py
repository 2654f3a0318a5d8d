"""Finding a Python the unprivileged job uid can actually run.

The platform's own interpreter may sit where that uid cannot reach it (a pyenv build under
``/root``, mode 0700). Jobs then run on a system interpreter of the same minor version: user
code needs the standard library and the ``puras`` package, not the platform's interpreter.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

from puras_sandbox._types import SandboxError
from puras_sandbox.bwrap import _id_kwargs


def _candidates() -> list[str]:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = [sys.executable]
    for directory in ("/usr/local/bin", "/usr/bin"):
        path = os.path.join(directory, version)
        if os.path.exists(path):
            found.append(path)
    if (which := shutil.which(version)) and not which.startswith(os.path.expanduser("~")):
        found.append(which)
    return list(dict.fromkeys(found))


def _runs_as(python: str, uid: int | None, gid: int | None) -> bool:
    probe = f"import sys; assert sys.version_info[:2] == {tuple(sys.version_info[:2])!r}"
    try:
        result = subprocess.run(
            [python, "-I", "-S", "-c", probe],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=20,
            cwd="/",
            env={},
            **_id_kwargs(uid, gid),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


@functools.cache
def python_for(uid: int | None, gid: int | None) -> str:
    """An interpreter of this Python's minor version that ``uid``/``gid`` can run."""
    candidates = _candidates()
    for python in candidates:
        if _runs_as(python, uid, gid):
            return python
    raise SandboxError(
        f"no Python {sys.version_info.major}.{sys.version_info.minor} that uid {uid} can run; "
        f"tried {', '.join(candidates)} (install one outside root-only directories, or set the "
        "runner's job_python)"
    )
