"""Puras SDK.

* The client, for apps: ``puras.Client`` submits jobs to deployed skills and waits for them.
* The in-skill runtime, for code running inside a job: ``puras.secret``, ``puras.load_bytes`` /
  ``puras.load_path`` (file inputs of any shape), ``puras.drive`` (signed links),
  ``puras.media`` (media generation), ``puras.subagent`` (child jobs) and
  ``puras.request_input`` (ask a person and wait for the answer).

Inside a job only this package is importable from the platform, so the client (which needs
``httpx``) is loaded on first use rather than at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from puras import drive, media, subagent
from puras.asking import InputRequested, request_input
from puras.errors import JobError, PurasAPIError, PurasError, SecretError
from puras.inputs import InputError, load_bytes, load_path
from puras.runtime import secret
from puras.subagent import SubagentRunError

if TYPE_CHECKING:
    from puras.client import AsyncClient, Client

__all__ = [
    "AsyncClient",
    "Client",
    "InputError",
    "InputRequested",
    "JobError",
    "PurasAPIError",
    "PurasError",
    "SecretError",
    "SubagentRunError",
    "drive",
    "load_bytes",
    "load_path",
    "media",
    "request_input",
    "secret",
    "subagent",
]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from puras import client

        return getattr(client, name)
    raise AttributeError(f"module 'puras' has no attribute {name!r}")
