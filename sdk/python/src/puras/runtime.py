"""The in-skill runtime: helpers for code running inside a job."""

from __future__ import annotations

import os
import re

from puras.errors import SecretError

_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def secret(name: str, default: str | None = None) -> str:
    """A skillpack secret by NAME (injected into the job's environment at start).

    Raises :class:`SecretError` when it is not set and no ``default`` is given.
    """
    if not _NAME.match(name):
        raise ValueError(f"secret names match ^[A-Z_][A-Z0-9_]*$; {name!r} does not")
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is not None:
        return default
    raise SecretError(
        f"secret {name} is not set for this skillpack (set it with PUT /v1/secrets/{name})"
    )
