"""What every provider adapter shares: the outcome of a call, and how upstream errors read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from puras_common.errors import backoff

from puras_media.errors import MediaError

T = TypeVar("T")

RETRIED_STATUSES = frozenset({429, 502, 503, 504})
"""Answers meaning the request was not taken; retried (with the rest of 5xx only for reads)."""
ATTEMPTS = 4


class MediaCancelled(Exception):
    """The job stopped waiting (cancelled or out of time); the upstream request was cancelled."""


@dataclass
class Generation:
    """What a provider returned for one call."""

    request_id: str | None
    body: Any = None
    """The JSON result (fal's output, a transcript); None for inline audio."""
    metrics: dict[str, Any] = field(default_factory=dict)
    audio: bytes | None = None
    """Inline output (text-to-speech answers with the audio itself)."""
    audio_type: str | None = None


def upstream_message(response: httpx.Response) -> str:
    """The provider's own words for an error answer (fal ``detail``, ElevenLabs
    ``detail.message``, or the body's start)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500].strip() or f"HTTP {response.status_code}"
    return describe_error(body) or f"HTTP {response.status_code}"


def describe_error(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if body.get(key):
                return describe_error(body[key]) if not isinstance(body[key], str) else body[key]
        return ""
    if isinstance(body, list):
        parts = []
        for item in body[:10]:
            if isinstance(item, dict) and "msg" in item:
                where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{item['msg']} at {where}" if where else str(item["msg"]))
            else:
                parts.append(describe_error(item) if not isinstance(item, str) else item)
        return "; ".join(p for p in parts if p)
    return str(body) if body is not None else ""


def failure(
    response: httpx.Response, *, provider: str, model: str, request_id: str | None = None
) -> MediaError:
    """The MediaError for an error answer: the caller's fault (4xx) or the upstream's."""
    message = upstream_message(response)
    status = response.status_code
    if status in (401, 403):
        return MediaError(
            "upstream_failed",
            f"{provider} refused the platform's credentials ({status}): {message}",
            model=model,
            request_id=request_id,
            upstream_status=status,
        )
    code = (
        "upstream_rejected"
        if 400 <= status < 500 and status not in RETRIED_STATUSES
        else "upstream_failed"
    )
    return MediaError(
        code, f"{model}: {message}", model=model, request_id=request_id, upstream_status=status
    )


async def with_retries(
    call: Callable[[], Awaitable[httpx.Response]], *, idempotent: bool
) -> httpx.Response:
    """``call`` retried on connection failures and answers that mean "not taken"; a read is also
    retried on other 5xx and on timeouts. Returns the last response."""
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        try:
            response = await call()
        except httpx.ConnectError:
            if last:
                raise
        except httpx.TimeoutException:
            if not idempotent or last:
                raise
        else:
            retry = response.status_code in RETRIED_STATUSES or (
                idempotent and response.status_code >= 500
            )
            if not retry or last:
                return response
        await asyncio.sleep(backoff(attempt, base=0.5, cap=8.0))
    raise AssertionError("unreachable")


async def wait_or_cancel(seconds: float, cancelled: asyncio.Event | None) -> None:
    """Sleep ``seconds``; raise MediaCancelled at once if ``cancelled`` is set meanwhile."""
    if cancelled is None:
        await asyncio.sleep(seconds)
        return
    if cancelled.is_set():
        raise MediaCancelled
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cancelled.wait(), seconds)
    if cancelled.is_set():
        raise MediaCancelled
