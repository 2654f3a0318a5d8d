"""``puras.drive``: the workspace's drive from inside a job.

Files are plain files under ``./drive/``. ``url`` and ``sign`` mint links through the gateway
with the job's token (``PURAS_API_BASE`` + ``PURAS_JOB_TOKEN``), so they are scoped to the job's
workspace. Standard library only.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from puras.errors import PurasAPIError, PurasError

DEFAULT_TTL = 3600
FETCHED_ENV = "PURAS_DRIVE_FETCHED"
"""Set when the drive is not a live folder (the S3 backend): files are fetched on first read,
and listed in this file so that the runner does not upload them back as the job's own."""


def sign(path: str, *, ttl: int = DEFAULT_TTL) -> dict[str, Any]:
    """Sign a drive file and return the full ``{path, signed_url, expires_in}``.

    ``path`` is workspace-relative (``media/abc.png``); a leading ``<workspace_id>/`` is
    accepted. ``ttl`` is seconds until the URL expires (30 .. 30 days, default 1 h).
    """
    return _api("GET", "/v1/drive/sign", {"path": path, "ttl": str(ttl)})


def url(path: str, *, ttl: int = DEFAULT_TTL) -> str:
    """Convenience wrapper around :func:`sign` that returns just the signed URL."""
    return str(sign(path, ttl=ttl)["signed_url"])


def root() -> Path:
    """The job's drive folder (``./drive``)."""
    return Path(os.environ.get("PURAS_DRIVE_DIR") or "drive").absolute()


def relative(path: str) -> str:
    """A drive path checked the way the platform checks it, without the optional
    ``<workspace_id>/`` or ``drive/`` prefix; ``ValueError`` for anything that would leave it."""
    if not isinstance(path, str) or not path:
        raise ValueError("a drive path is a non-empty string")
    workspace = os.environ.get("PURAS_WORKSPACE_ID")
    if workspace and path.startswith(f"{workspace}/"):
        path = path[len(workspace) + 1 :]
    if path.startswith("drive/"):
        path = path[len("drive/") :]
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError(f"drive path {path!r} must be relative, without backslashes or NUL")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"drive path {path!r} may not contain '..' or name the drive's root")
    return "/".join(parts)


def local_path(path: str) -> Path:
    """Where a drive path lives in this job: ``./drive/<path>``."""
    return root() / relative(path)


def fetch_missing(path: str, local: Path) -> None:
    """Fetch a drive file that is not here yet (the S3 backend); ``FileNotFoundError`` if the
    drive has no such file, or if the drive is a live folder and the file is not in it."""
    manifest = os.environ.get(FETCHED_ENV)
    rel = relative(path)
    if not manifest or not os.environ.get("PURAS_JOB_TOKEN"):
        raise FileNotFoundError(f"no file at drive/{rel}")
    try:
        link = url(rel, ttl=300)
    except PurasAPIError as exc:
        if exc.status == 404:
            raise FileNotFoundError(f"no file at drive/{rel}") from None
        raise
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=".fetch-")
    try:
        with os.fdopen(fd, "wb") as sink, urllib.request.urlopen(link, timeout=60) as response:
            while chunk := response.read(256 * 1024):
                sink.write(chunk)
        os.replace(tmp, local)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    st = local.stat()
    with open(manifest, "a", encoding="utf-8") as out:
        out.write(json.dumps({"path": rel, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}) + "\n")


def _api(method: str, route: str, params: dict[str, str]) -> Any:
    base = os.environ.get("PURAS_API_BASE", "").rstrip("/")
    token = os.environ.get("PURAS_JOB_TOKEN") or os.environ.get("PURAS_API_KEY")
    if not base or not token:
        raise PurasError("puras.drive needs PURAS_API_BASE and PURAS_JOB_TOKEN (set inside jobs) or PURAS_API_KEY")
    request = urllib.request.Request(
        f"{base}{route}?{urlencode(params)}", method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise _api_error(exc) from None


def _api_error(exc: urllib.error.HTTPError) -> PurasAPIError:
    raw = exc.read()
    try:
        error = json.loads(raw).get("error", {})
    except ValueError:
        return PurasAPIError(exc.code, "error", raw[:500].decode("utf-8", "replace"))
    return PurasAPIError(exc.code, error.get("code", "error"), error.get("message", ""), details=error.get("details"))
