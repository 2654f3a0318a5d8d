"""Leases and fencing with two function runners: a killed runner's job finishes on the other
exactly once, and a runner that wakes up late cannot complete a job that moved on."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import pytest
from nats.js import JetStreamContext
from puras_common.events import parse_event
from puras_testing import eventually
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT = {
    "skills/steady/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 60\n",
    "skills/steady/main.py": """
        import time

        def run(inputs):
            print("working", flush=True)
            time.sleep(inputs["seconds"])
            return {"done": inputs["tag"]}
        """,
}


@pytest.fixture(scope="module")
async def two_runners(platform: Platform) -> Platform:
    if "function-runner-2" not in platform.supervisor.children:
        await platform.add_replica("function-runner", "function-runner-2")
    return platform


@pytest.fixture(scope="module")
async def tenant(two_runners: Platform) -> Tenant:
    tenant = await two_runners.tenant(f"lease-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    return tenant


async def job_events(js: JetStreamContext, job_id: str) -> list[Any]:
    sub = await js.pull_subscribe(f"job.{job_id}.>", stream="JOBS")
    try:
        return [parse_event(m.data) for m in await sub.fetch(100, timeout=2)]
    finally:
        await sub.unsubscribe()


def runner_holding(platform: Platform, runner_id: str) -> str:
    """The supervisor's name for the runner process whose instance id is ``runner_id``."""
    for name in ("function-runner", "function-runner-2"):
        if runner_id.endswith(f"-{platform.pid(name)}"):
            return name
    raise AssertionError(f"no runner process is {runner_id}")


async def started_on(tenant: Tenant, js: JetStreamContext, job_id: str) -> str:
    async def started() -> str | None:
        events = await job_events(js, job_id)
        return next((e.payload.runner for e in events if e.type == "job.started"), None)

    return await eventually(started, timeout=20, what="the job to start")


async def finished(tenant: Tenant, job_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        job = (await tenant.http.get(f"/v1/jobs/{job_id}")).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return await eventually(done, timeout=60, what="the job to finish")


async def test_a_killed_runners_job_finishes_on_another_exactly_once(
    two_runners: Platform, tenant: Tenant, js: JetStreamContext
) -> None:
    job = (
        await tenant.http.post(
            "/v1/jobs", json={"skill": "steady", "inputs": {"seconds": 2, "tag": "k"}}
        )
    ).json()
    holder = runner_holding(two_runners, await started_on(tenant, js, job["id"]))
    await two_runners.supervisor.kill(holder)  # SIGKILL: the runner and its job die mid-way
    done = await finished(tenant, job["id"])
    assert done["status"] == "succeeded" and done["result"] == {"done": "k"}
    assert done["attempt"] == 2
    types = [e.type for e in await job_events(js, job["id"])]
    assert types.count("job.succeeded") == 1 and types.count("job.retrying") == 1
    assert [t for t in types if t in ("job.succeeded", "job.failed", "job.cancelled")] == [
        "job.succeeded"
    ]


async def test_a_runner_that_wakes_up_late_cannot_complete_the_job(
    two_runners: Platform, tenant: Tenant, js: JetStreamContext
) -> None:
    job = (
        await tenant.http.post(
            "/v1/jobs", json={"skill": "steady", "inputs": {"seconds": 1, "tag": "s"}}
        )
    ).json()
    holder = runner_holding(two_runners, await started_on(tenant, js, job["id"]))
    stale_pid = two_runners.pid(holder)
    os.kill(stale_pid, signal.SIGSTOP)  # frozen: no heartbeats, its lease runs out
    try:
        done = await finished(tenant, job["id"])
        assert done["status"] == "succeeded" and done["attempt"] == 2
    finally:
        os.kill(stale_pid, signal.SIGCONT)
    # The stale runner finishes attempt 1 and reports it; the scheduler refuses it.
    await eventually(
        lambda: "attempt 1 was superseded by attempt 2" in two_runners.logs(holder),
        timeout=20,
        what="the stale runner's result to be refused",
    )
    events = await job_events(js, job["id"])
    assert [e.type for e in events].count("job.succeeded") == 1
    assert (await tenant.http.get(f"/v1/jobs/{job['id']}")).json()["attempt"] == 2

    # Both attempts ran. The job's end carries the compute of the attempt that counts; the
    # refused one's, which no event of the scheduler's carries, is published on its own.
    async def both_metered() -> bool:
        usage = (await tenant.http.get(f"/v1/jobs/{job['id']}/usage")).json()["data"]
        return [r["kind"] for r in usage] == ["compute", "compute"]

    await eventually(both_metered, timeout=20, what="both attempts' compute")
    events = await job_events(js, job["id"])
    (end,) = (e for e in events if e.type == "job.succeeded")
    assert end.payload.compute is not None and end.payload.compute.attempt == 2
    alone = [e.payload for e in events if e.type == "job.usage"]
    assert [(u.kind, u.attempt, u.ledger) for u in alone] == [("compute", 1, False)]
