"""What the sync and async clients share: request shapes, error mapping and SSE parsing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from puras.errors import PurasAPIError

DEFAULT_API_BASE = "http://127.0.0.1:8080"


def resolve_config(api_key: str | None, api_base: str | None) -> tuple[str, str]:
    key = api_key or os.environ.get("PURAS_API_KEY")
    if not key:
        raise ValueError("no API key: pass api_key= or set PURAS_API_KEY")
    base = (api_base or os.environ.get("PURAS_API_BASE") or DEFAULT_API_BASE).rstrip("/")
    return key, base


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "User-Agent": "puras-python"}


def submit_request(
    skill: str,
    inputs: dict[str, Any] | None,
    *,
    default_skillpack: str | None,
    skillpack: str | None,
    version: int | None,
    wait: bool,
    timeout: int,
    routing_key: str | None = None,
    webhook_url: str | None = None,
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The body and query of ``POST /v1/jobs``."""
    body: dict[str, Any] = {"skill": skill, "inputs": inputs or {}}
    pack = skillpack or (default_skillpack if "/" not in skill else None)
    if pack:
        body["skillpack"] = pack
    if version is not None:
        body["version"] = version
    if routing_key is not None:
        body["routing_key"] = routing_key
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    params = {"wait": "true", "timeout": str(timeout)} if wait else None
    return body, params


def check(response: httpx.Response) -> Any:
    """The JSON body of a 2xx response, or :class:`PurasAPIError` with the API's code and message."""
    if response.status_code < 400:
        return response.json()
    retry_after = response.headers.get("retry-after", "")
    try:
        body = response.json()
        error = body.get("error", {})
        raise PurasAPIError(
            response.status_code,
            error.get("code", "error"),
            error.get("message", response.text),
            details=error.get("details"),
            body=body,
            retry_after=int(retry_after) if retry_after.isdigit() else None,
        )
    except ValueError:
        raise PurasAPIError(response.status_code, "error", response.text[:500]) from None


@dataclass
class SSEParser:
    """Server-Sent Events, line by line (the subset the API uses: id, event, data, comments)."""

    _id: str | None = None
    _event: str = "message"
    _data: list[str] = field(default_factory=list)

    def feed(self, lines: Iterable[str]) -> Iterator[tuple[str, str | None, str]]:
        """``(event, id, data)`` for each complete event in ``lines``."""
        for line in lines:
            if line == "":
                if self._data:
                    yield self._event, self._id, "\n".join(self._data)
                self._event, self._data = "message", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id":
                self._id = value


@dataclass
class EventCursor:
    """Where an event stream is, for resuming after a dropped connection."""

    after_id: int = 0
    ended: bool = False
    end: dict[str, Any] | None = None

    def accept(self, event: str, data: str) -> dict[str, Any] | None:
        """The job event in a frame (None for the end frame, which ends the stream)."""
        if event == "end":
            self.ended = True
            self.end = json.loads(data)
            return None
        parsed = json.loads(data)
        if parsed["id"] <= self.after_id:
            return None  # already seen before a reconnect
        self.after_id = parsed["id"]
        accepted: dict[str, Any] = parsed
        return accepted
