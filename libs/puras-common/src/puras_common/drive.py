"""Client of the drive service's internal listener, for platform services that read or write a
workspace's files on a job's behalf (runners, the media and agent tools) and for the gateway's
job outputs. Bytes stream both ways; paths are checked by the drive, which answers 400 for any
path that would leave the workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx

from puras_common.errors import PLATFORM_RETRY_SECONDS, backoff


class DriveError(RuntimeError):
    """The drive refused a request or could not be reached; the message says which and why."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


async def request_retried(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    failure: Callable[[str], Exception],
    **kwargs: Any,
) -> httpx.Response:
    """A small idempotent request to a platform listener, retried on transport errors and 5xx
    for up to :data:`PLATFORM_RETRY_SECONDS` (a listener restarting in a rolling upgrade is back
    within seconds); the first answer below 500 is returned as it is, else ``failure(message)``
    is raised."""
    last = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PLATFORM_RETRY_SECONDS
    attempt = 0
    while True:
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            last = repr(exc)
        else:
            if response.status_code < 500:
                return response
            last = f"answered {response.status_code}"
        attempt += 1
        if loop.time() > deadline:
            break
        await asyncio.sleep(backoff(attempt, base=0.1, cap=1.0))
    raise failure(
        f"{method} {url} failed after {attempt} attempts in {PLATFORM_RETRY_SECONDS:.0f}s: {last}"
    )


def drive_paths_in(value: Any, *, limit: int) -> list[str]:
    """Every ``drive_path`` string anywhere in ``value`` (``{"drive_path": …}`` objects in inputs
    or results), in order, without repeats, at most ``limit``."""
    found: list[str] = []

    def visit(node: Any) -> None:
        if len(found) >= limit:
            return
        if isinstance(node, dict):
            path = node.get("drive_path")
            if isinstance(path, str) and path and path not in found:
                found.append(path)
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(value)
    return found


@dataclass(frozen=True)
class Mount:
    """How a job on this host gets its workspace's drive: ``root`` is the workspace's folder
    when the drive keeps files on a disk this host shares (the local backend), else ``None``.
    ``uid``/``gid`` are the workspace's own: its jobs run as them and its folder is theirs
    (``None`` when the drive assigns none)."""

    backend: str
    root: str | None
    uid: int | None = None
    gid: int | None = None

    @property
    def owner(self) -> tuple[int, int] | None:
        if self.uid is None:
            return None
        return self.uid, self.gid if self.gid is not None else self.uid


@dataclass(frozen=True)
class Origin:
    """Who writes a file: recorded with it, and answered by ``GET /v1/drive/origin``."""

    job_id: UUID
    skill_name: str | None = None
    tool: str | None = None

    def params(self) -> dict[str, str]:
        values = {"job_id": str(self.job_id), "skill": self.skill_name, "tool": self.tool}
        return {k: v for k, v in values.items() if v}


class DriveClient:
    """The drive's internal endpoints, with the platform's token."""

    def __init__(self, base_url: str, *, token: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.client = client

    def _url(self, workspace_id: UUID, verb: str) -> str:
        return f"{self.base_url}/internal/drive/{workspace_id}/{verb}"

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await request_retried(
            self.client, method, url, failure=DriveError, headers=self.headers, **kwargs
        )
        _raise_for(response, method, url)
        return response.json()

    async def mount(self, workspace_id: UUID) -> Mount:
        body = await self._call("GET", self._url(workspace_id, "mount"))
        return Mount(
            backend=body["backend"], root=body.get("root"), uid=body.get("uid"), gid=body.get("gid")
        )

    async def record_written(
        self, workspace_id: UUID, paths: list[str], *, origin: Origin
    ) -> list[str]:
        """Record files already in place (the local backend) as written by ``origin``."""
        body = {
            "paths": paths,
            "origin": {
                "job_id": str(origin.job_id),
                "skill_name": origin.skill_name,
                "tool": origin.tool,
            },
        }
        answer = await self._call("POST", self._url(workspace_id, "written"), json=body)
        recorded: list[str] = answer["recorded"]
        return recorded

    async def delete(self, workspace_id: UUID, path: str) -> int:
        """Delete a file, or with a trailing ``/`` everything under a folder; how many went."""
        body = await self._call("DELETE", self._url(workspace_id, "object"), params={"path": path})
        deleted: int = body["deleted"]
        return deleted

    async def sign_many(
        self,
        workspace_id: UUID,
        paths: list[str],
        *,
        ttl: int = 3600,
        written_by: Sequence[UUID] | None = None,
        readable: str | None = None,
    ) -> dict[str, str | None]:
        """Links to ``paths`` (``None`` for a path that cannot have one); with ``written_by``,
        only to files those jobs wrote or that lie under the ``readable`` folder."""
        request: dict[str, Any] = {"paths": paths, "ttl": ttl}
        if written_by is not None:
            request |= {"written_by": [str(j) for j in written_by], "readable": readable}
        body = await self._call("POST", self._url(workspace_id, "sign"), json=request)
        signed: dict[str, str | None] = body["signed_urls"]
        return signed

    async def put(
        self,
        workspace_id: UUID,
        path: str,
        content: bytes | AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        origin: Origin | None = None,
    ) -> dict[str, Any]:
        """Store a file; returns ``{drive_path, full_path, signed_url, bytes, content_type}``.
        Not retried: a stream cannot be replayed."""
        params = {"path": path, **(origin.params() if origin else {})}
        if origin is not None:
            params["source"] = "job"
        headers = {**self.headers, "content-type": content_type or "application/octet-stream"}
        try:
            response = await self.client.put(
                self._url(workspace_id, "object"),
                params=params,
                content=content,
                headers=headers,
                timeout=httpx.Timeout(600.0, connect=5.0),
            )
        except httpx.TransportError as exc:
            raise DriveError(f"PUT {path}: drive unreachable: {exc!r}") from None
        _raise_for(response, "PUT", path)
        stored: dict[str, Any] = response.json()
        return stored

    @contextlib.asynccontextmanager
    async def open(self, workspace_id: UUID, path: str) -> AsyncIterator[httpx.Response]:
        """A file's bytes as a streamed response (``aiter_bytes``); :class:`DriveError` with
        ``status=404`` when there is no such file."""
        request = self.client.build_request(
            "GET",
            self._url(workspace_id, "object"),
            params={"path": path},
            headers=self.headers,
            timeout=httpx.Timeout(600.0, connect=5.0),
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise DriveError(f"GET {path}: drive unreachable: {exc!r}") from None
        try:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response, "GET", path)
            yield response
        finally:
            await response.aclose()


def _raise_for(response: httpx.Response, method: str, what: str) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    raise DriveError(f"{method} {what}: {message}", status=response.status_code)
