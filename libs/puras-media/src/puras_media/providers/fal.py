"""fal's queue API: submit a request, poll its status, fetch its result.

``POST {queue}/{endpoint}`` with the inputs as the JSON body answers ``{request_id,
status_url, response_url, cancel_url}``; ``GET status_url`` answers ``IN_QUEUE`` (with a
``queue_position``), ``IN_PROGRESS`` or ``COMPLETED`` (with ``metrics``); ``GET
response_url`` answers the model's output, or the model's error (422 for inputs it refused).
``PUT cancel_url`` withdraws a request we stopped waiting for. Every request carries
``Authorization: Key <PURAS_FAL_API_KEY>``; the URLs fal hands back are followed only on the
queue's own origin, so the key never goes anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from puras_common.logging import get_logger

from puras_media.errors import MediaError
from puras_media.providers.base import (
    Generation,
    MediaCancelled,
    describe_error,
    failure,
    wait_or_cancel,
    with_retries,
)

log = get_logger("puras_media.fal")

PENDING = frozenset({"IN_QUEUE", "IN_PROGRESS"})


class FalQueue:
    """One adapter per process, shared by every call."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        queue_url: str,
        api_key: str,
        timeout_seconds: float = 1200.0,
        poll_seconds: float = 0.5,
        poll_max_seconds: float = 5.0,
    ) -> None:
        self.http = http
        self.queue_url = queue_url.rstrip("/")
        self.api_key = api_key
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.poll_max_seconds = poll_max_seconds

    @property
    def origin(self) -> str:
        parts = urlsplit(self.queue_url)
        return f"{parts.scheme}://{parts.netloc}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.api_key}", "Accept": "application/json"}

    def _own(self, url: Any, fallback: str) -> str:
        """A URL fal handed back, if it is on the queue's origin; else the one we build."""
        if isinstance(url, str) and url.startswith(self.origin + "/"):
            return url
        return fallback

    async def generate(
        self,
        endpoint: str,
        inputs: dict[str, Any],
        *,
        model: str,
        cancelled: asyncio.Event | None = None,
    ) -> Generation:
        """Submit ``inputs`` to ``endpoint`` and wait for the result."""
        submitted = await self._submit(endpoint, inputs, model=model)
        request_id = str(submitted.get("request_id") or "")
        if not request_id:
            raise MediaError(
                "upstream_failed",
                f"{model}: fal accepted the request but gave no request_id",
                model=model,
            )
        base = f"{self.queue_url}/{endpoint}/requests/{quote(request_id, safe='')}"
        status_url = self._own(submitted.get("status_url"), base + "/status")
        response_url = self._own(submitted.get("response_url"), base)
        cancel_url = self._own(submitted.get("cancel_url"), base + "/cancel")
        try:
            metrics = await self._wait(
                status_url, model=model, request_id=request_id, cancelled=cancelled
            )
        except (MediaCancelled, asyncio.CancelledError):
            await self._cancel(cancel_url, request_id)
            raise
        except MediaError as exc:
            if exc.code == "upstream_timeout":
                await self._cancel(cancel_url, request_id)
            raise
        body = await self._result(response_url, model=model, request_id=request_id)
        return Generation(request_id=request_id, body=body, metrics=metrics)

    async def _submit(self, endpoint: str, inputs: dict[str, Any], *, model: str) -> dict[str, Any]:
        url = f"{self.queue_url}/{endpoint}"
        try:
            response = await with_retries(
                lambda: self.http.post(url, json=inputs, headers=self._headers()), idempotent=False
            )
        except httpx.HTTPError as exc:
            raise MediaError(
                "upstream_failed",
                f"{model}: fal could not be reached: {type(exc).__name__}",
                model=model,
            ) from None
        if response.status_code >= 300:
            raise failure(response, provider="fal", model=model)
        queued: dict[str, Any] = _json(response, model=model)
        return queued

    async def _wait(
        self, status_url: str, *, model: str, request_id: str, cancelled: asyncio.Event | None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_seconds
        delay = self.poll_seconds
        while True:
            try:
                response = await with_retries(
                    lambda: self.http.get(
                        status_url, params={"logs": "0"}, headers=self._headers()
                    ),
                    idempotent=True,
                )
            except httpx.HTTPError as exc:
                raise MediaError(
                    "upstream_failed",
                    f"{model}: fal's status endpoint failed: {type(exc).__name__}",
                    model=model,
                    request_id=request_id,
                ) from None
            if response.status_code >= 300:
                raise failure(response, provider="fal", model=model, request_id=request_id)
            body = _json(response, model=model)
            status = body.get("status")
            if status == "COMPLETED":
                if body.get("error"):
                    message = describe_error(body.get("error"))
                    code = (
                        "upstream_rejected"
                        if body.get("error_type") in _CALLER_ERRORS
                        else "upstream_failed"
                    )
                    raise MediaError(
                        code, f"{model}: {message}", model=model, request_id=request_id
                    )
                metrics = body.get("metrics")
                return metrics if isinstance(metrics, dict) else {}
            if status not in PENDING:
                raise MediaError(
                    "upstream_failed",
                    f"{model}: fal reported status {status!r}",
                    model=model,
                    request_id=request_id,
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise MediaError(
                    "upstream_timeout",
                    f"{model}: no result within {self.timeout_seconds:g} s (last status {status}); the request was cancelled",
                    model=model,
                    request_id=request_id,
                )
            await wait_or_cancel(min(delay, left), cancelled)
            delay = min(self.poll_max_seconds, delay * 1.5)

    async def _result(self, response_url: str, *, model: str, request_id: str) -> Any:
        try:
            response = await with_retries(
                lambda: self.http.get(response_url, headers=self._headers()), idempotent=True
            )
        except httpx.HTTPError as exc:
            raise MediaError(
                "upstream_failed",
                f"{model}: fal's result could not be read: {type(exc).__name__}",
                model=model,
                request_id=request_id,
            ) from None
        if response.status_code >= 300:
            raise failure(response, provider="fal", model=model, request_id=request_id)
        return _json(response, model=model)

    async def _cancel(self, cancel_url: str, request_id: str) -> None:
        """Withdraw a request we no longer wait for (best effort, never raises)."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self.http.put(cancel_url, headers=self._headers(), timeout=5.0))
            log.info("withdrew an upstream request", request_id=request_id)


_CALLER_ERRORS = frozenset(
    {"content_policy_violation", "validation_error", "invalid_input", "file_download_error"}
)


def _json(response: httpx.Response, *, model: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise MediaError(
            "upstream_failed", f"{model}: fal answered something that is not JSON", model=model
        ) from None
