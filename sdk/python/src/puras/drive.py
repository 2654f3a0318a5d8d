"""``puras.drive``: the workspace's drive from inside a job.

Files are plain files under ``./drive/``. ``url`` and ``sign`` mint links through the gateway
with the job's token (``PURAS_API_BASE`` + ``PURAS_JOB_TOKEN``), so they are scoped to the job's
workspace. Where ``./drive`` is not a live folder (the S3 backend), a file the job wrote is
uploaded when the job signs it. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from puras.errors import PurasAPIError, PurasError

DEFAULT_TTL = 3600
FETCHED_ENV = "PURAS_DRIVE_FETCHED"
"""Set when the runner writes the job's files back from a folder of the job's own (S3, and the
local backend's overlay): files fetched on first read, or uploaded when signed, are listed in
this file so that the runner does not upload them again."""


def sign(path: str, *, ttl: int = DEFAULT_TTL) -> dict[str, Any]:
    """Sign a drive file and return the full ``{path, signed_url, expires_in}``.

    ``path`` is workspace-relative (``media/abc.png``); a leading ``<workspace_id>/`` is
    accepted. ``ttl`` is seconds until the URL expires (30 .. 30 days, default 1 h).
    """
    if os.environ.get(FETCHED_ENV):
        _save_before_signing(path)
    link: dict[str, Any] = _api("GET", "/v1/drive/sign", {"path": path, "ttl": str(ttl)})
    return link


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


def _save_before_signing(path: str) -> None:
    """Where ``./drive`` is the job's own folder (S3), a file the job wrote is uploaded when the
    job signs it rather than at teardown, so the link works at once."""
    try:
        rel = relative(path)
    except ValueError:
        return  # the gateway answers with the reason
    local = root() / rel
    try:
        st = local.stat()
    except OSError:
        return
    if _already_saved(rel, st.st_size, st.st_mtime_ns):
        return
    _upload(local, rel, st.st_size)
    _remember_saved(rel, st.st_size, st.st_mtime_ns)


def _already_saved(rel: str, size: int, mtime_ns: int) -> bool:
    try:
        with open(os.environ[FETCHED_ENV], encoding="utf-8") as lines:
            for line in lines:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    item = json.loads(line)
                    if (item["path"], item["bytes"], item["mtime_ns"]) == (rel, size, mtime_ns):
                        return True
    except OSError:
        pass
    return False


def _remember_saved(rel: str, size: int, mtime_ns: int) -> None:
    with open(os.environ[FETCHED_ENV], "a", encoding="utf-8") as out:
        out.write(json.dumps({"path": rel, "bytes": size, "mtime_ns": mtime_ns}) + "\n")


def _upload(local: Path, rel: str, size: int) -> None:
    """``POST /v1/drive/upload`` as a stream (multipart by hand: the standard library has none)."""
    boundary = f"puras-{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n{rel}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quote(local.name)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        with open(local, "rb") as source:
            while chunk := source.read(256 * 1024):
                yield chunk
        yield tail

    _api(
        "POST",
        "/v1/drive/upload",
        {},
        data=body(),
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
        },
    )


def _api(
    method: str,
    route: str,
    params: dict[str, str],
    *,
    data: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    base = os.environ.get("PURAS_API_BASE", "").rstrip("/")
    token = os.environ.get("PURAS_JOB_TOKEN") or os.environ.get("PURAS_API_KEY")
    if not base or not token:
        raise PurasError(
            "puras.drive needs PURAS_API_BASE and PURAS_JOB_TOKEN (set inside jobs) or PURAS_API_KEY"
        )
    query = f"?{urlencode(params)}" if params else ""
    request = urllib.request.Request(
        f"{base}{route}{query}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
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
    return PurasAPIError(
        exc.code, error.get("code", "error"), error.get("message", ""), details=error.get("details")
    )
