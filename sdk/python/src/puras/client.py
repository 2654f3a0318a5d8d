"""``puras.Client`` and ``puras.AsyncClient``: call deployed skills from any app, script or CI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import httpx

from puras._http import (
    TERMINAL,
    EventCursor,
    SSEParser,
    check,
    headers,
    resolve_config,
    submit_request,
)
from puras.errors import JobError, PurasAPIError

Transport = Literal["sse", "poll"]


def _run_result(job: dict[str, Any], timeout: float) -> Any:
    if job.get("status") == "succeeded":
        return job.get("result")
    if job.get("status") not in TERMINAL:
        raise JobError(job, f"job {job['id']} still {job.get('status')} after {timeout}s")
    raise JobError(job)


class Client:
    """Call deployed skills.

    Pass a fully-qualified ``workspace/skillpack/skill`` path to :meth:`run` / :meth:`submit`,
    or set a default ``skillpack`` (slug or UUID) once and call skills by bare name.
    ``api_key`` defaults to ``PURAS_API_KEY`` and ``api_base`` to ``PURAS_API_BASE``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        skillpack: str | None = None,
        *,
        api_base: str | None = None,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key, base = resolve_config(api_key, api_base)
        self.skillpack = skillpack
        self.api_base = base
        self._http = httpx.Client(base_url=base, headers=headers(key), timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(
        self,
        skill: str,
        inputs: dict[str, Any] | None = None,
        *,
        skillpack: str | None = None,
        version: int | None = None,
        wait: bool = False,
        timeout: int = 60,
    ) -> dict[str, Any]:
        """Submit a job and return the job object; ``wait=True`` holds the request server-side
        for up to ``timeout`` seconds (the API caps it at 60)."""
        body, params = submit_request(
            skill, inputs, default_skillpack=self.skillpack, skillpack=skillpack, version=version, wait=wait, timeout=timeout
        )
        read = httpx.Timeout(self._http.timeout.connect or 10.0, read=timeout + 10) if wait else None
        return check(self._http.post("/v1/jobs", json=body, params=params, **({"timeout": read} if read else {})))

    def get(self, job_id: str) -> dict[str, Any]:
        """Fetch a job by id."""
        return check(self._http.get(f"/v1/jobs/{job_id}"))

    def wait(self, job_id: str, *, timeout: float = 600, poll_interval: float = 2.0) -> dict[str, Any]:
        """Poll until the job is terminal or ``timeout`` seconds pass; returns the last job seen."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.get("status") in TERMINAL or time.monotonic() >= deadline:
                return job
            time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))

    def run(
        self,
        skill: str,
        inputs: dict[str, Any] | None = None,
        *,
        skillpack: str | None = None,
        version: int | None = None,
        timeout: float = 600,
        poll_interval: float = 2.0,
    ) -> Any:
        """Submit and wait, returning the skill's result; :class:`JobError` if it did not succeed."""
        job = self.submit(skill, inputs, skillpack=skillpack, version=version)
        return _run_result(self.wait(job["id"], timeout=timeout, poll_interval=poll_interval), timeout)

    def events(
        self, job_id: str, *, after_id: int = 0, transport: Transport = "sse", poll_interval: float = 1.5, reconnects: int = 5
    ) -> Iterator[dict[str, Any]]:
        """The job's events (``{id, type, payload, created_at}``) as they happen, from the start
        (or after ``after_id``), ending when the job ends. A dropped stream is resumed from the
        last event seen, without gaps or repeats."""
        cursor = EventCursor(after_id)
        if transport == "poll":
            yield from self._poll(job_id, cursor, poll_interval)
            return
        failures = 0
        while not cursor.ended:
            try:
                with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/stream", headers={"Last-Event-ID": str(cursor.after_id)},
                    timeout=httpx.Timeout(10.0, read=60.0),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        check(response)
                    parser = SSEParser()
                    for event, _id, data in parser.feed(response.iter_lines()):
                        if (item := cursor.accept(event, data)) is not None:
                            yield item
                        if cursor.ended:
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                failures += 1
                if failures > reconnects:
                    raise
                time.sleep(min(2.0, 0.2 * failures))

    def _poll(self, job_id: str, cursor: EventCursor, interval: float) -> Iterator[dict[str, Any]]:
        while True:
            page = check(self._http.get(f"/v1/jobs/{job_id}/events", params={"after_id": cursor.after_id}))
            for event in page["events"]:
                cursor.after_id = event["id"]
                yield event
            if page["terminal"]:
                return
            if not page["events"]:
                time.sleep(interval)


class AsyncClient:
    """The asyncio counterpart of :class:`Client`, with the same methods as coroutines."""

    def __init__(
        self,
        api_key: str | None = None,
        skillpack: str | None = None,
        *,
        api_base: str | None = None,
        timeout: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key, base = resolve_config(api_key, api_base)
        self.skillpack = skillpack
        self.api_base = base
        self._http = httpx.AsyncClient(base_url=base, headers=headers(key), timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self,
        skill: str,
        inputs: dict[str, Any] | None = None,
        *,
        skillpack: str | None = None,
        version: int | None = None,
        wait: bool = False,
        timeout: int = 60,
    ) -> dict[str, Any]:
        body, params = submit_request(
            skill, inputs, default_skillpack=self.skillpack, skillpack=skillpack, version=version, wait=wait, timeout=timeout
        )
        read = httpx.Timeout(self._http.timeout.connect or 10.0, read=timeout + 10) if wait else None
        return check(await self._http.post("/v1/jobs", json=body, params=params, **({"timeout": read} if read else {})))

    async def get(self, job_id: str) -> dict[str, Any]:
        return check(await self._http.get(f"/v1/jobs/{job_id}"))

    async def wait(self, job_id: str, *, timeout: float = 600, poll_interval: float = 2.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            job = await self.get(job_id)
            if job.get("status") in TERMINAL or loop.time() >= deadline:
                return job
            await asyncio.sleep(min(poll_interval, max(0.0, deadline - loop.time())))

    async def run(
        self,
        skill: str,
        inputs: dict[str, Any] | None = None,
        *,
        skillpack: str | None = None,
        version: int | None = None,
        timeout: float = 600,
        poll_interval: float = 2.0,
    ) -> Any:
        job = await self.submit(skill, inputs, skillpack=skillpack, version=version)
        return _run_result(await self.wait(job["id"], timeout=timeout, poll_interval=poll_interval), timeout)

    async def events(
        self, job_id: str, *, after_id: int = 0, transport: Transport = "sse", poll_interval: float = 1.5, reconnects: int = 5
    ) -> AsyncIterator[dict[str, Any]]:
        cursor = EventCursor(after_id)
        if transport == "poll":
            while True:
                page = check(await self._http.get(f"/v1/jobs/{job_id}/events", params={"after_id": cursor.after_id}))
                for event in page["events"]:
                    cursor.after_id = event["id"]
                    yield event
                if page["terminal"]:
                    return
                if not page["events"]:
                    await asyncio.sleep(poll_interval)
        failures = 0
        while not cursor.ended:
            try:
                async with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/stream", headers={"Last-Event-ID": str(cursor.after_id)},
                    timeout=httpx.Timeout(10.0, read=60.0),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        check(response)
                    parser = SSEParser()
                    async for line in response.aiter_lines():
                        for event, _id, data in parser.feed([line]):
                            if (item := cursor.accept(event, data)) is not None:
                                yield item
                            if cursor.ended:
                                return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                failures += 1
                if failures > reconnects:
                    raise
                await asyncio.sleep(min(2.0, 0.2 * failures))


__all__ = ["AsyncClient", "Client", "JobError", "PurasAPIError"]
