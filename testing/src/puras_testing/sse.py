"""Reading a job's SSE stream in tests."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse


async def read_sse(
    http: httpx.AsyncClient, method: str, url: str, **kw: Any
) -> tuple[list[Any], dict[str, Any] | None, httpx.Response]:
    """(events, end frame data, response) of one SSE response, parsed by httpx-sse.

    httpx-sse dispatches a ``: ping`` comment as an event with empty data once an id has been
    seen (it keeps the last id across events), so pings are skipped here by their empty data.
    It also adds its own headers to the dict it is given, so it gets a copy of ``headers``.
    """
    if "headers" in kw:
        kw = {**kw, "headers": dict(kw["headers"])}
    events, end = [], None
    async with aconnect_sse(http, method, url, timeout=60, **kw) as source:
        response = source.response
        async for sse in source.aiter_sse():
            if sse.event == "end":
                end = orjson.loads(sse.data)
                break
            if sse.data:
                events.append((sse.id, orjson.loads(sse.data)))
    return events, end, response
