"""puras_sandbox: the one way the platform runs tenant code on a host (Linux only).

A :class:`ForkServer` ("zygote") is one long-lived, warm Python process per prepared
deployment that forks one :class:`Child` per job, so starting a job costs about a
millisecond instead of a fresh interpreter. Children are their own session leaders, get
exactly the environment they are given, run in their workdir under :class:`Limits`, as an
unprivileged uid when asked, and optionally inside bubblewrap (:class:`Isolation`).

Standard library only.
"""

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
from .bwrap import bwrap_available
from .forkserver import ZYGOTE_SCRIPT, Child, ForkServer
from .interpreters import python_for

__all__ = [
    "ZYGOTE_SCRIPT",
    "Child",
    "Exec",
    "ForkServer",
    "ForkServerDied",
    "Isolation",
    "Limits",
    "Outcome",
    "PythonCall",
    "SandboxError",
    "SpawnFailed",
    "bwrap_available",
    "python_for",
]
