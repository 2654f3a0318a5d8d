"""An id is one segment of the request path, whatever it holds: the clients never send a crafted
id to another route of the API, and refuse an id that URL normalisation would drop or resolve
before sending anything."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from puras import AsyncClient, Client
from puras._paths import api_path

CRAFTED = "../../v1/balance"
REFUSED = ["", ".", ".."]


def _answer(path: bytes) -> httpx.Response:
    if path.endswith(b"/stream"):
        return httpx.Response(200, text="event: end\ndata: {}\n\n")
    if path.endswith(b"/events"):
        return httpx.Response(200, json={"events": [], "next_after_id": 0, "terminal": True})
    return httpx.Response(200, json={"id": "j", "status": "succeeded"})


def _recording() -> tuple[list[bytes], httpx.MockTransport]:
    sent: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.partition(b"?")[0]  # as sent, percent-escapes kept
        sent.append(path)
        return _answer(path)

    return sent, httpx.MockTransport(handle)


SYNC_CALLS: dict[str, Callable[[Client, str], Any]] = {
    "get": lambda c, job_id: c.get(job_id),
    "provide_input": lambda c, job_id: c.provide_input(job_id, {"ok": True}),
    "events (sse)": lambda c, job_id: list(c.events(job_id)),
    "events (poll)": lambda c, job_id: list(c.events(job_id, transport="poll")),
}


async def _collect(events: Any) -> list[Any]:
    return [event async for event in events]


ASYNC_CALLS: dict[str, Callable[[AsyncClient, str], Any]] = {
    "get": lambda c, job_id: c.get(job_id),
    "provide_input": lambda c, job_id: c.provide_input(job_id, {"ok": True}),
    "events (sse)": lambda c, job_id: _collect(c.events(job_id)),
    "events (poll)": lambda c, job_id: _collect(c.events(job_id, transport="poll")),
}

EXPECTED = {
    "get": b"/v1/jobs/..%2F..%2Fv1%2Fbalance",
    "provide_input": b"/v1/jobs/..%2F..%2Fv1%2Fbalance/input",
    "events (sse)": b"/v1/jobs/..%2F..%2Fv1%2Fbalance/stream",
    "events (poll)": b"/v1/jobs/..%2F..%2Fv1%2Fbalance/events",
}


@pytest.mark.parametrize("call", SYNC_CALLS)
def test_a_crafted_job_id_stays_under_its_job(call: str) -> None:
    sent, transport = _recording()
    with Client(api_key="k", api_base="http://api.test", transport=transport) as client:
        SYNC_CALLS[call](client, CRAFTED)
    assert sent == [EXPECTED[call]]


@pytest.mark.parametrize("call", ASYNC_CALLS)
async def test_a_crafted_job_id_stays_under_its_job_async(call: str) -> None:
    sent, transport = _recording()
    async with AsyncClient(api_key="k", api_base="http://api.test", transport=transport) as client:
        await ASYNC_CALLS[call](client, CRAFTED)
    assert sent == [EXPECTED[call]]


@pytest.mark.parametrize("job_id", REFUSED)
@pytest.mark.parametrize("call", SYNC_CALLS)
def test_an_empty_dot_or_dot_dot_job_id_is_refused_before_sending(call: str, job_id: str) -> None:
    sent, transport = _recording()
    with (
        Client(api_key="k", api_base="http://api.test", transport=transport) as client,
        pytest.raises(ValueError, match=f"^{re.escape(repr(job_id))} is not an id or name"),
    ):
        SYNC_CALLS[call](client, job_id)
    assert sent == []


@pytest.mark.parametrize("job_id", REFUSED)
@pytest.mark.parametrize("call", ASYNC_CALLS)
async def test_an_empty_dot_or_dot_dot_job_id_is_refused_before_sending_async(
    call: str, job_id: str
) -> None:
    sent, transport = _recording()
    async with AsyncClient(api_key="k", api_base="http://api.test", transport=transport) as client:
        with pytest.raises(ValueError, match=f"^{re.escape(repr(job_id))} is not an id or name"):
            await ASYNC_CALLS[call](client, job_id)
    assert sent == []


@pytest.mark.parametrize(
    ("segment", "encoded"),
    [
        ("00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000"),
        ("OPENAI_API_KEY", "OPENAI_API_KEY"),
        ("a/b?c#d%e f", "a%2Fb%3Fc%23d%25e%20f"),
        ("..a", "..a"),
        ("é", "%C3%A9"),
    ],
)
def test_each_segment_is_encoded_whole(segment: str, encoded: str) -> None:
    assert api_path("/v1/jobs/{}/feedback/stats", segment) == f"/v1/jobs/{encoded}/feedback/stats"
