"""Whether a runner runs tenant code in bubblewrap: the one decision both runners make at start.

``PURAS_SANDBOX`` (or ``PURAS_<RUNNER>_SANDBOX``) says ``auto``, ``bwrap`` or ``none``:

* ``bwrap``: always; the runner refuses to start where bubblewrap cannot run.
* ``none``: never. The operator said so explicitly; the runner says loudly that it runs
  tenant code unsandboxed.
* ``auto`` (the default): bubblewrap where it works. Without it, a development platform
  (``make run`` on a laptop) runs unsandboxed and says so loudly; a production one
  (``PURAS_ENVIRONMENT=production``) refuses to start, since running tenants' code without the
  sandbox is never a silent fallback there.
"""

from __future__ import annotations

from typing import Literal, Protocol

from puras_sandbox import bwrap_available

SandboxMode = Literal["auto", "bwrap", "none"]

UNSANDBOXED_WARNING = (
    "TENANT CODE RUNS UNSANDBOXED: no namespaces (every job shares this host's filesystem view, "
    "processes and network); for development only; see docs/isolation.md"
)


class SandboxUnavailable(RuntimeError):
    """The configuration asks for the sandbox and bubblewrap cannot run here."""


class _Log(Protocol):
    def info(self, event: str, **kw: object) -> object: ...

    def warning(self, event: str, **kw: object) -> object: ...


def decide_sandbox(
    mode: SandboxMode,
    *,
    environment: str,
    uid: int | None,
    gid: int | None,
    log: _Log,
    available: bool | None = None,
) -> bool:
    """True when jobs run in bubblewrap; raises :class:`SandboxUnavailable` when the
    configuration requires it (``bwrap``, or ``auto`` in production) and it cannot run.
    ``available`` overrides the probe (tests)."""
    if mode == "none":
        log.warning(UNSANDBOXED_WARNING, reason="PURAS_SANDBOX=none")
        return False
    works = bwrap_available(uid, gid) if available is None else available
    if works:
        log.info("tenant code runs in bubblewrap")
        return True
    if mode == "bwrap":
        raise SandboxUnavailable(
            "PURAS_SANDBOX=bwrap but bubblewrap cannot run here "
            "(apt-get install bubblewrap; unprivileged user namespaces must be enabled)"
        )
    if environment == "production":
        raise SandboxUnavailable(
            "production refuses to run tenant code unsandboxed and bubblewrap cannot run here: "
            "install bubblewrap (and enable unprivileged user namespaces), or set "
            "PURAS_SANDBOX=none to run without it anyway"
        )
    log.warning(UNSANDBOXED_WARNING, reason="bubblewrap is not available")
    return False
