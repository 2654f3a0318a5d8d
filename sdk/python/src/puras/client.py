"""``puras.Client`` and ``puras.AsyncClient``: call deployed skills from any app, script or CI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, BinaryIO, Literal

import httpx

from puras._http import (
    EventCursor,
    SSEParser,
    check,
    headers,
    resolve_config,
    submit_request,
)
from puras._jobapi import TERMINAL
from puras._paths import api_path
from puras.errors import JobError, PurasAPIError

Transport = Literal["sse", "poll"]


def _run_result(job: dict[str, Any], timeout: float) -> Any:
    if job.get("status") == "succeeded":
        return job.get("result")
    if job.get("status") not in TERMINAL:
        raise JobError(job, f"job {job['id']} still {job.get('status')} after {timeout}s")
    raise JobError(job)


def _settled(job: dict[str, Any], or_waiting: bool) -> bool:
    """Whether a wait is over: the job ended, or (``or_waiting``) it waits for input."""
    return job.get("status") in TERMINAL or (or_waiting and job.get("status") == "waiting")


def _answer(answer: Any, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"answer": answer}
    if request_id is not None:
        body["request_id"] = request_id
    return body


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
        self._http = httpx.Client(
            base_url=base, headers=headers(key), timeout=timeout, transport=transport
        )

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
        routing_key: str | None = None,
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        """Submit a job and return the job object; ``wait=True`` holds the request server-side
        for up to ``timeout`` seconds (the API caps it at 60). ``routing_key`` keeps jobs with
        the same key on the same version while a deployment ramps up; ``webhook_url`` also
        sends the job's end there, signed."""
        body, params = submit_request(
            skill,
            inputs,
            default_skillpack=self.skillpack,
            skillpack=skillpack,
            version=version,
            wait=wait,
            timeout=timeout,
            routing_key=routing_key,
            webhook_url=webhook_url,
        )
        extra: dict[str, Any] = {}
        if wait:
            extra["timeout"] = httpx.Timeout(self._http.timeout.connect or 10.0, read=timeout + 10)
        job: dict[str, Any] = check(self._http.post("/v1/jobs", json=body, params=params, **extra))
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        """Fetch a job by id."""
        job: dict[str, Any] = check(self._http.get(api_path("/v1/jobs/{}", job_id)))
        return job

    def wait(
        self,
        job_id: str,
        *,
        timeout: float = 600,
        poll_interval: float = 2.0,
        or_waiting: bool = False,
    ) -> dict[str, Any]:
        """Poll until the job is terminal or ``timeout`` seconds pass; returns the last job seen.
        ``or_waiting``: return as well when the job is ``waiting`` for input (its
        ``input_request`` holds the question; answer it with :meth:`provide_input`)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if _settled(job, or_waiting) or time.monotonic() >= deadline:
                return job
            time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))

    def provide_input(
        self, job_id: str, answer: Any, *, request_id: str | None = None
    ) -> dict[str, Any]:
        """Answer the question a ``waiting`` job asked; returns the job (queued to run on).
        The answer must match the question's ``answer_schema`` (:class:`PurasAPIError` 400,
        with JSON pointers in ``details``); 409 when the job is not waiting, or, given
        ``request_id``, waits on another question."""
        job: dict[str, Any] = check(
            self._http.post(api_path("/v1/jobs/{}/input", job_id), json=_answer(answer, request_id))
        )
        return job

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
        return _run_result(
            self.wait(job["id"], timeout=timeout, poll_interval=poll_interval), timeout
        )

    def events(
        self,
        job_id: str,
        *,
        after_id: int = 0,
        transport: Transport = "sse",
        poll_interval: float = 1.5,
        reconnects: int = 5,
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
                    "GET",
                    api_path("/v1/jobs/{}/stream", job_id),
                    headers={"Last-Event-ID": str(cursor.after_id)},
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

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Any other endpoint of the API (``/v1/deployments``, ``/v1/secrets``, ``/v1/drive/…``),
        with this client's key; returns the JSON answer, :class:`PurasAPIError` otherwise."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return check(
            self._http.request(
                method, path, params=params, json=json, files=files, data=data, **extra
            )
        )

    def download(self, path: str, into: BinaryIO, *, params: dict[str, Any] | None = None) -> int:
        """Stream a binary answer (a drive zip, a file) into ``into``; returns the bytes written."""
        written = 0
        with self._http.stream(
            "GET", path, params=params, timeout=httpx.Timeout(10.0, read=120.0)
        ) as response:
            if response.status_code >= 400:
                response.read()
                check(response)
            for chunk in response.iter_bytes():
                into.write(chunk)
                written += len(chunk)
        return written

    def _poll(self, job_id: str, cursor: EventCursor, interval: float) -> Iterator[dict[str, Any]]:
        while True:
            page = check(
                self._http.get(
                    api_path("/v1/jobs/{}/events", job_id), params={"after_id": cursor.after_id}
                )
            )
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
        self._http = httpx.AsyncClient(
            base_url=base, headers=headers(key), timeout=timeout, transport=transport
        )

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
        routing_key: str | None = None,
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        body, params = submit_request(
            skill,
            inputs,
            default_skillpack=self.skillpack,
            skillpack=skillpack,
            version=version,
            wait=wait,
            timeout=timeout,
            routing_key=routing_key,
            webhook_url=webhook_url,
        )
        extra: dict[str, Any] = {}
        if wait:
            extra["timeout"] = httpx.Timeout(self._http.timeout.connect or 10.0, read=timeout + 10)
        job: dict[str, Any] = check(
            await self._http.post("/v1/jobs", json=body, params=params, **extra)
        )
        return job

    async def get(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = check(await self._http.get(api_path("/v1/jobs/{}", job_id)))
        return job

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float = 600,
        poll_interval: float = 2.0,
        or_waiting: bool = False,
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            job = await self.get(job_id)
            if _settled(job, or_waiting) or loop.time() >= deadline:
                return job
            await asyncio.sleep(min(poll_interval, max(0.0, deadline - loop.time())))

    async def provide_input(
        self, job_id: str, answer: Any, *, request_id: str | None = None
    ) -> dict[str, Any]:
        """Answer the question a ``waiting`` job asked (see :meth:`Client.provide_input`)."""
        job: dict[str, Any] = check(
            await self._http.post(
                api_path("/v1/jobs/{}/input", job_id), json=_answer(answer, request_id)
            )
        )
        return job

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
        return _run_result(
            await self.wait(job["id"], timeout=timeout, poll_interval=poll_interval), timeout
        )

    async def events(
        self,
        job_id: str,
        *,
        after_id: int = 0,
        transport: Transport = "sse",
        poll_interval: float = 1.5,
        reconnects: int = 5,
    ) -> AsyncIterator[dict[str, Any]]:
        cursor = EventCursor(after_id)
        if transport == "poll":
            while True:
                page = check(
                    await self._http.get(
                        api_path("/v1/jobs/{}/events", job_id), params={"after_id": cursor.after_id}
                    )
                )
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
                    "GET",
                    api_path("/v1/jobs/{}/stream", job_id),
                    headers={"Last-Event-ID": str(cursor.after_id)},
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
