"""``puras.Client`` and ``puras.AsyncClient`` against the live gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import puras
import pytest
from puras_testing.platform import ECHO_PROJECT, Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT = {
    **ECHO_PROJECT,
    "skills/chatty/skill.yaml": "entrypoint: main.py:run\n",
    "skills/chatty/main.py": """
        import time

        def run(inputs):
            for i in range(inputs["lines"]):
                print(f"line {i}", flush=True)
                time.sleep(0.05)
            return {"lines": inputs["lines"]}
        """,
    "skills/boom/skill.yaml": "entrypoint: main.py:run\n",
    "skills/boom/main.py": "def run(inputs):\n    raise KeyError('missing')\n",
}


@pytest.fixture(scope="module")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"sdk-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    return tenant


class DropOnce(httpx.BaseTransport):
    """A transport that cuts the first event stream after a few lines, like a flaky network."""

    def __init__(self, lines_before_drop: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.lines = lines_before_drop
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith("/stream") or self.dropped:
            return response
        self.dropped += 1
        budget = self.lines

        def cut() -> Iterator[bytes]:
            nonlocal budget
            for chunk in response.stream:  # type: ignore[union-attr]
                for line in chunk.splitlines(keepends=True):
                    if budget == 0:
                        raise httpx.RemoteProtocolError("connection dropped")
                    budget -= 1
                    yield line

        return httpx.Response(response.status_code, headers=response.headers, stream=_Iter(cut()))


class _Iter(httpx.SyncByteStream):
    def __init__(self, it: Iterator[bytes]) -> None:
        self.it = it

    def __iter__(self) -> Iterator[bytes]:
        return self.it


async def test_run_submit_get_wait_and_errors(
    platform: Platform, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PURAS_API_KEY", tenant.api_key)
    monkeypatch.setenv("PURAS_API_BASE", platform.url)

    def use() -> dict[str, Any]:
        with puras.Client() as client:  # key and base from the environment
            out: dict[str, Any] = {"run": client.run("echo", {"text": "hi"}, poll_interval=0.1)}
            job = client.submit("echo", {"text": "sync"}, wait=True, timeout=10)
            out["sync"] = (job["status"], job["result"])
            queued = client.submit(f"{tenant.slug}/default/echo", {"text": "full path"})
            out["waited"] = client.wait(queued["id"], timeout=20, poll_interval=0.1)["result"]
            out["get"] = client.get(queued["id"])["id"] == queued["id"]
            with pytest.raises(puras.JobError) as failed:
                client.run("boom", {}, poll_interval=0.1)
            out["job_error"] = (failed.value.status, failed.value.job["error"])
            with pytest.raises(puras.PurasAPIError) as api:
                client.submit("echo", {"text": 1})
            out["api_error"] = (api.value.status, api.value.code, api.value.details)
            return out

    out = await asyncio.to_thread(use)
    assert out["run"] == {"echoed": "hi"}
    assert out["sync"] == ("succeeded", {"echoed": "sync"})
    assert out["waited"] == {"echoed": "full path"} and out["get"]
    assert out["job_error"] == ("failed", "KeyError: 'missing'")
    assert out["api_error"] == (
        422,
        "validation_error",
        [{"pointer": "/inputs/text", "message": "1 is not of type 'string'"}],
    )


async def test_events_resume_after_a_dropped_connection_without_gaps(
    platform: Platform, tenant: Tenant
) -> None:
    job = await tenant.run("chatty", {"lines": 6})
    reference = (await tenant.http.get(f"/v1/jobs/{job['id']}/events")).json()["events"]

    def follow(transport: httpx.BaseTransport | None, mode: str = "sse") -> list[int]:
        with puras.Client(
            api_key=tenant.api_key, api_base=platform.url, transport=transport
        ) as client:
            return [e["id"] for e in client.events(job["id"], transport=mode)]  # type: ignore[arg-type]

    dropper = DropOnce(lines_before_drop=7)  # mid-way through the third event
    assert await asyncio.to_thread(follow, dropper) == [e["id"] for e in reference]
    assert dropper.dropped == 1
    assert await asyncio.to_thread(follow, None, "poll") == [e["id"] for e in reference]


async def test_async_client(platform: Platform, tenant: Tenant) -> None:
    async with puras.AsyncClient(api_key=tenant.api_key, api_base=platform.url) as client:
        assert await client.run("echo", {"text": "async"}, poll_interval=0.1) == {"echoed": "async"}
        job = await client.submit("chatty", {"lines": 3})
        seen = [e async for e in client.events(job["id"])]
        assert seen[0]["type"] == "queued" and seen[-1]["type"] == "succeeded"
        assert sum(1 for e in seen if e["type"] == "log") >= 1
        later = [e["id"] async for e in client.events(job["id"], after_id=seen[1]["id"])]
        assert later == [e["id"] for e in seen[2:]]
        with pytest.raises(puras.PurasAPIError) as missing:
            await client.get(str(uuid.uuid4()))
        assert missing.value.status == 404 and missing.value.code == "not_found"


async def test_events_resumed_at_the_last_event_of_an_ended_job_end_at_once(
    platform: Platform, tenant: Tenant
) -> None:
    job = await tenant.run("chatty", {"lines": 2})
    async with puras.AsyncClient(api_key=tenant.api_key, api_base=platform.url) as client:
        seen = [e async for e in client.events(job["id"])]
        assert seen[-1]["type"] == "succeeded"

        async def resume() -> list[dict[str, Any]]:
            return [e async for e in client.events(job["id"], after_id=seen[-1]["id"])]

        assert await asyncio.wait_for(resume(), 10) == []

    def sync_resume() -> list[dict[str, Any]]:
        with puras.Client(api_key=tenant.api_key, api_base=platform.url) as client:
            return list(client.events(job["id"], after_id=seen[-1]["id"]))

    assert await asyncio.wait_for(asyncio.to_thread(sync_resume), 10) == []
