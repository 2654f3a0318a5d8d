"""``puras.Client``: call deployed skills from any app, script or CI."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from puras.errors import JobError, PurasAPIError

DEFAULT_API_BASE = "http://127.0.0.1:8080"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


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
        key = api_key or os.environ.get("PURAS_API_KEY")
        if not key:
            raise ValueError("no API key: pass api_key= or set PURAS_API_KEY")
        self.skillpack = skillpack
        self.api_base = (api_base or os.environ.get("PURAS_API_BASE") or DEFAULT_API_BASE).rstrip("/")
        self._http = httpx.Client(
            base_url=self.api_base,
            headers={"Authorization": f"Bearer {key}", "User-Agent": "puras-python"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _api_error(response)
        return response.json()

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
        for up to ``timeout`` seconds (at most 60)."""
        body: dict[str, Any] = {"skill": skill, "inputs": inputs or {}}
        pack = skillpack or (self.skillpack if "/" not in skill else None)
        if pack:
            body["skillpack"] = pack
        if version is not None:
            body["version"] = version
        params = {"wait": "true", "timeout": str(timeout)} if wait else None
        read_timeout = timeout + 10 if wait else None
        kwargs: dict[str, Any] = {"json": body, "params": params}
        if read_timeout:
            kwargs["timeout"] = httpx.Timeout(self._http.timeout.connect or 10.0, read=read_timeout)
        return self._request("POST", "/v1/jobs", **kwargs)

    def get(self, job_id: str) -> dict[str, Any]:
        """Fetch a job by id."""
        return self._request("GET", f"/v1/jobs/{job_id}")

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
        job = self.wait(job["id"], timeout=timeout, poll_interval=poll_interval)
        if job.get("status") != "succeeded":
            if job.get("status") not in TERMINAL:
                raise JobError(job, f"job {job['id']} still {job.get('status')} after {timeout}s")
            raise JobError(job)
        return job.get("result")


def _api_error(response: httpx.Response) -> PurasAPIError:
    try:
        body = response.json()
        error = body.get("error", {})
        return PurasAPIError(
            response.status_code,
            error.get("code", "error"),
            error.get("message", response.text),
            details=error.get("details"),
            body=body,
        )
    except ValueError:
        return PurasAPIError(response.status_code, "error", response.text[:500])
