"""A rolling restart of every service, one by one, while function and agent jobs keep coming:
no job fails. Each service gets SIGTERM: the runners drain (take no new work, finish the jobs
they hold, agents included), the others finish their requests; the next one is restarted once
the last is healthy again. A submit refused while the gateway restarts is sent again, as a
client would; nothing that was accepted is lost."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
import pytest
from puras_testing import eventually
from puras_testing.models import Call, ModelStub, Reply, StubRequest, Turn
from puras_testing.platform import Platform, Tenant

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

MARKER = f"rolling-{uuid.uuid4().hex[:8]}"
PROJECT = {
    "skills/nap/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 60\n",
    "skills/nap/main.py": """
        import time

        def run(inputs):
            time.sleep(inputs["seconds"])
            return {"n": inputs["n"]}
        """,
    "skills/think/skill.yaml": (
        "entrypoint: SKILL.md\n"
        "input_schema: {type: object, properties: {n: {type: integer}}, required: [n]}\n"
        "output_schema: {type: object, properties: {answer: {type: string}}, required: [answer]}\n"
    ),
    "skills/think/SKILL.md": f"Think for a second, then call set_output. {MARKER}\n",
}
TERMINAL = ("succeeded", "failed", "cancelled")


def agent_turn(previous: Any) -> Any:
    """Each agent job runs ``sleep 1`` in bash, then sets its output: a second or so in flight."""

    def turn(request: StubRequest) -> Turn:
        if MARKER not in request.text():
            return previous(request) if previous else Reply(text="ok")
        if request.last_tool_results():
            return Reply(tool_calls=[Call("set_output", {"answer": "rested"})])
        return Reply(tool_calls=[Call("bash", {"command": "sleep 1"})])

    return turn


async def call(http: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """A request sent again while the gateway is away (connection refused, or 503), or after
    the pause a 429 names, as a well-behaved client under the per-key rate limit does; for as
    long as a restart may take (the gateway finishes its requests in flight first)."""
    deadline = asyncio.get_running_loop().time() + 180
    while asyncio.get_running_loop().time() < deadline:
        pause = 0.1
        with contextlib.suppress(httpx.TransportError):
            response = await http.request(method, url, **kw)
            if response.status_code == 429:
                pause = max(0.05, float(response.headers["Retry-After"]))
            elif response.status_code != 503:
                return response
        await asyncio.sleep(pause)
    raise AssertionError(f"{method} {url} never answered")


async def load(tenant: Tenant, ids: dict[str, str], stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        for skill, inputs in (("nap", {"seconds": 0.5, "n": n}), ("think", {"n": n})):
            response = await call(
                tenant.http, "POST", "/v1/jobs", json={"skill": skill, "inputs": inputs}
            )
            assert response.status_code == 201, response.text
            ids[response.json()["id"]] = skill
        n += 1
        await asyncio.sleep(0.15)


async def statuses(tenant: Tenant, ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    jobs = await asyncio.gather(*(call(tenant.http, "GET", f"/v1/jobs/{i}") for i in ids))
    return {j.json()["id"]: j.json() for j in jobs}


async def test_a_rolling_restart_under_load_fails_no_job(
    platform: Platform, model_provider: ModelStub
) -> None:
    previous = model_provider.fallback
    model_provider.fallback = agent_turn(previous)
    # Credit enough that holds of the many calls in flight at once are never what stops one.
    tenant = await platform.tenant(f"rolling-{uuid.uuid4().hex[:8]}", credit_usd="100")
    assert (await tenant.push(PROJECT)).status_code == 201
    ids: dict[str, str] = {}
    stop = asyncio.Event()
    loader = asyncio.create_task(load(tenant, ids, stop))
    try:
        for name in list(platform.supervisor.children):
            if name.endswith("runner") or "runner-" in name:
                # Restart a runner only while it holds work, so the drain is what saves it.
                async def running() -> bool:
                    jobs = await statuses(tenant, dict(list(ids.items())[-12:]))
                    return any(j["status"] == "running" for j in jobs.values())

                await eventually(running, timeout=30, interval=0.05, what="jobs running")
            await platform.restart(name)
        stop.set()
        await loader

        async def all_ended() -> dict[str, dict[str, Any]] | None:
            jobs = await statuses(tenant, ids)
            return jobs if all(j["status"] in TERMINAL for j in jobs.values()) else None

        jobs = await eventually(all_ended, timeout=120, interval=0.5, what="every job to end")
    finally:
        stop.set()
        loader.cancel()
        with contextlib.suppress(BaseException):
            await loader
        model_provider.fallback = previous
    failed = {i: (j["skill_name"], j["status"], j["error"]) for i, j in jobs.items()}
    failed = {i: f for i, f in failed.items() if f[1] != "succeeded"}
    assert not failed, failed
    assert {"nap", "think"} <= set(ids.values()) and len(ids) > 20
    agents = [j for j in jobs.values() if j["skill_name"] == "think"]
    assert all(j["attempt"] == 1 for j in agents)  # drained, never run twice
