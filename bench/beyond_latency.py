"""What webhooks, schedules and ramps add, measured on the whole platform (every service its own
process, as in production):

* webhook latency: from a job's end (``finished_at``) to the signed delivery arriving at a
  receiver on loopback, and how fast a burst of deliveries drains;
* schedule lateness: an every-second schedule's jobs, from their fire time (``scheduled_for``)
  to the job existing (``created_at``);
* the ramp's cost at submit: ``wait=true`` round trips of the same skill with no ramp and while
  a 50 % ramp is on.

    .venv/bin/python bench/beyond_latency.py [--jobs 200] [--ticks 20] [--calls 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import datetime
from typing import Any

import orjson

PROJECT = {
    "skills/echo/skill.yaml": "entrypoint: main.py:run\n",
    "skills/echo/main.py": "def run(inputs):\n    return {'echoed': inputs.get('text')}\n",
}


def line(name: str, values: list[float], unit: str = "ms") -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"  {name:34s} p50 {statistics.median(ordered):8.1f} {unit}   p99 {p99:8.1f} {unit}"
        f"   n={len(ordered)}"
    )


async def webhooks(tenant: Any, receiver: Any, jobs: int) -> list[str]:
    await tenant.http.post("/v1/webhooks", json={"url": f"{receiver.url}/bench"})
    t0 = time.monotonic()
    ids = []
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with gate:
            response = await tenant.http.post(
                "/v1/jobs", json={"skill": "echo", "inputs": {"text": str(i)}}
            )
            ids.append(response.json()["id"])

    await asyncio.gather(*(one(i) for i in range(jobs)))
    received = await receiver.wait_for("/bench", jobs, timeout=600)
    drained = time.monotonic() - t0
    arrived = {orjson.loads(r.body)["data"]["id"]: r.received_at for r in received}
    latency = []
    for job_id in ids:
        job = (await tenant.http.get(f"/v1/jobs/{job_id}")).json()
        finished = datetime.fromisoformat(job["finished_at"]).timestamp()
        latency.append((arrived[job_id] - finished) * 1000)
    quiet = []
    for i in range(20):  # one job at a time: the latency of the path itself
        job = await tenant.run("echo", {"text": f"q{i}"})
        (request,) = (await receiver.wait_for("/bench", jobs + i + 1, timeout=60))[-1:]
        finished = datetime.fromisoformat(job["finished_at"]).timestamp()
        quiet.append((request.received_at - finished) * 1000)
    return [
        line("job end → webhook received, one at a time", quiet),
        line("job end → webhook received, in a burst", latency),
        f"  {jobs} jobs submitted → all {jobs} deliveries received: {drained:.1f} s "
        f"({jobs / drained:.0f} /s)",
    ]


async def schedules(tenant: Any, ticks: int) -> list[str]:
    made = (
        await tenant.http.post(
            "/v1/schedules", json={"skill": "echo", "inputs": {}, "cron": "* * * * * *"}
        )
    ).json()
    deadline = time.monotonic() + ticks + 30
    jobs: list[dict[str, Any]] = []
    while len(jobs) < ticks and time.monotonic() < deadline:
        await asyncio.sleep(1)
        jobs = (
            await tenant.http.get(f"/v1/schedules/{made['id']}/jobs", params={"limit": 200})
        ).json()["data"]
    await tenant.http.patch(f"/v1/schedules/{made['id']}", json={"paused": True})
    late = [
        (
            datetime.fromisoformat(j["created_at"]) - datetime.fromisoformat(j["scheduled_for"])
        ).total_seconds()
        * 1000
        for j in jobs
    ]
    return [line("fire time → job submitted", late)]


async def ramp(tenant: Any, calls: int) -> list[str]:
    """Alternate, call by call, a job pinned to a version (no draw) and an unpinned one split by
    the ramp, so both see the same load on a shared machine."""
    second = (await tenant.push(PROJECT, activate="false")).json()
    await tenant.http.post(f"/v1/deployments/{second['id']}/activate", json={"traffic_percent": 50})
    pinned: list[float] = []
    drawn: list[float] = []
    for i in range(2 * calls):
        t0 = time.perf_counter()
        await tenant.run("echo", {"text": str(i)}, **({"version": 1} if i % 2 else {}))
        (pinned if i % 2 else drawn).append((time.perf_counter() - t0) * 1000)
    return [
        line("wait=true, pinned (no draw)", pinned),
        line("wait=true, split by a 50 % ramp", drawn),
    ]


async def main(jobs: int, ticks: int, calls: int) -> None:
    from puras_testing.infra import start_infra
    from puras_testing.platform import start_platform
    from puras_testing.webhooks import webhook_receiver

    env = {"PURAS_WEBHOOKS_SSRF_ALLOW": "127.0.0.0/8"}
    async with (
        start_infra() as infra,
        start_platform(infra, extra_env=env) as platform,
        webhook_receiver() as receiver,
    ):
        tenant = await platform.tenant("bench", credit_usd="100")
        assert (await tenant.push(PROJECT)).status_code == 201
        report = [*await webhooks(tenant, receiver, jobs), *await schedules(tenant, ticks)]
        report += await ramp(tenant, calls)
    print("\n".join(report))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.ticks, args.calls))
