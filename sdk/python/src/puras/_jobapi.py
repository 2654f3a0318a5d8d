"""Calls from inside a job to the platform's API, with the job's token (``PURAS_API_BASE`` and
``PURAS_JOB_TOKEN``, set by the runner). Standard library only."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from puras.errors import PurasAPIError, PurasError

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
"""The statuses a job ends in (the platform's own definition cannot be imported here: this
package ships to apps and skills without the platform)."""


def call(
    method: str, route: str, body: Any = None, *, timeout: float = 30.0, what: str = "puras"
) -> Any:
    """The JSON answer of ``method route``; :class:`PurasAPIError` for an error answer."""
    base = os.environ.get("PURAS_API_BASE", "").rstrip("/")
    token = os.environ.get("PURAS_JOB_TOKEN")
    if not base or not token:
        raise PurasError(
            f"{what} runs inside a job: it needs PURAS_API_BASE and PURAS_JOB_TOKEN, which the platform sets for every job"
        )
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "puras-runtime"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{base}{route}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise error_of(exc) from None
    except urllib.error.URLError as exc:
        raise PurasError(f"{what}: cannot reach the platform at {base}: {exc.reason}") from None


def error_of(exc: urllib.error.HTTPError) -> PurasAPIError:
    raw = exc.read()
    try:
        body = json.loads(raw)
        error = body.get("error", {}) if isinstance(body, dict) else {}
    except ValueError:
        return PurasAPIError(exc.code, "error", raw[:500].decode("utf-8", "replace"))
    return PurasAPIError(
        exc.code,
        error.get("code", "error"),
        error.get("message", ""),
        details=error.get("details"),
        body=body,
    )
