"""The queue through outages: a job with no runner to take it says so (``waiting_reason``
``no_runner``, on the job and in its events) and runs once one is back; a NATS restart under a
load of jobs fails none of them and costs none of them an attempt."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from puras_testing import eventually
from puras_testing.platform import Platform, Tenant

from .test_rolling_restart import TERMINAL, call, statuses

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

PROJECT = {
    "skills/nap/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 60\n",
    "skills/nap/main.py": """
        import time

        def run(inputs):
            time.sleep(inputs["seconds"])
            return {"n": inputs["n"]}
        """,
}


async def test_a_job_without_a_runner_says_so_and_runs_when_one_is_back(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"norunner-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    # Every function runner, replicas other tests added included, so none can take the job.
    runners = [n for n in platform.supervisor.children if n.startswith("function-runner")]
    for name in runners:
        await platform.stop_service(name)
    try:
        submitted = await tenant.http.post(
            "/v1/jobs", json={"skill": "nap", "inputs": {"seconds": 0, "n": 1}}
        )
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]

        async def waiting_for_a_runner() -> dict[str, Any] | None:
            job = (await tenant.http.get(f"/v1/jobs/{job_id}")).json()
            return job if job["waiting_reason"] == "no_runner" else None

        job = await eventually(waiting_for_a_runner, timeout=20, what="no_runner on the job")
        assert job["status"] == "queued" and job["queue_position"] is None

        async def announced() -> list[dict[str, Any]] | None:
            events = (await tenant.http.get(f"/v1/jobs/{job_id}/events")).json()["events"]
            told = [e for e in events if e["type"] == "waiting_reason"]
            return told or None

        told = await eventually(announced, timeout=20, what="a waiting_reason event")
        assert told[0]["payload"]["reason"] == "no_runner"
        listed = (await tenant.http.get("/v1/jobs?status=queued")).json()["data"]
        assert [j["waiting_reason"] for j in listed if j["id"] == job_id] == ["no_runner"]
        # A sync call whose wait ends with the job still queued answers with the job as it
        # stands, saying why it waits (asked again, as the same job, if the scheduler was slow).
        again = {"Idempotency-Key": uuid.uuid4().hex}

        async def explained() -> dict[str, Any] | None:
            answer = await tenant.http.post(
                "/v1/jobs?wait=true&timeout=1",
                json={"skill": "nap", "inputs": {"seconds": 0, "n": 2}},
                headers=again,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "queued"
            return answer.json() if answer.json()["waiting_reason"] is not None else None

        await eventually(explained, timeout=20, what="a sync answer saying why the job waits")
    finally:
        for name in runners:
            await platform.start_service(name)

    async def ended() -> dict[str, Any] | None:
        job = (await tenant.http.get(f"/v1/jobs/{job_id}")).json()
        return job if job["status"] in TERMINAL else None

    job = await eventually(ended, timeout=60, what="the job to run")
    assert job["status"] == "succeeded" and job["attempt"] == 1, job
    assert job["waiting_reason"] is None


async def load(tenant: Tenant, ids: dict[str, str], stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        response = await call(
            tenant.http,
            "POST",
            "/v1/jobs",
            json={"skill": "nap", "inputs": {"seconds": 0.5, "n": n}},
        )
        assert response.status_code == 201, response.text
        ids[response.json()["id"]] = "nap"
        n += 1
        await asyncio.sleep(0.1)


async def test_a_nats_restart_under_load_fails_no_job(platform: Platform) -> None:
    nats = platform.infra.nats
    if nats is None:
        pytest.skip("NATS is external to the test run")
    tenant = await platform.tenant(f"natsout-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    ids: dict[str, str] = {}
    stop = asyncio.Event()
    loader = asyncio.create_task(load(tenant, ids, stop))
    try:

        async def running() -> bool:
            jobs = await statuses(tenant, dict(list(ids.items())[-8:]))
            return any(j["status"] == "running" for j in jobs.values())

        await eventually(running, timeout=30, interval=0.05, what="jobs running")
        await nats.stop()
        await asyncio.sleep(3)  # the outage: longer than a lease heartbeat
        await nats.start()
        await asyncio.sleep(3)  # load keeps coming after the bus is back
        stop.set()
        await loader

        async def all_ended() -> dict[str, dict[str, Any]] | None:
            jobs = await statuses(tenant, ids)
            return jobs if all(j["status"] in TERMINAL for j in jobs.values()) else None

        jobs = await eventually(all_ended, timeout=180, interval=0.5, what="every job to end")
    finally:
        stop.set()
        loader.cancel()
        with contextlib.suppress(BaseException):
            await loader
    failed = {i: (j["status"], j["error"]) for i, j in jobs.items() if j["status"] != "succeeded"}
    assert not failed, failed
    assert len(ids) > 20
    retried = {i: j["attempt"] for i, j in jobs.items() if j["attempt"] != 1}
    assert not retried, f"the outage cost jobs an attempt: {retried}"
