"""What waiting for input costs, measured on the whole platform (every service its own process):

* ask: from submit to the job being ``waiting`` (dispatch, run up to the question, the scheduler
  recording it, the gateway's read model showing it);
* resume: from the answer's ``POST /v1/jobs/{id}/input`` to the job's result (queued again,
  dispatched as a new attempt, the function replayed with its answer);
* and, alternated call by call under the same load, a plain job from submit to its result.

    .venv/bin/python bench/input_latency.py [--jobs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

PROJECT = {
    "skills/ask/skill.yaml": "entrypoint: main.py:run\n",
    "skills/ask/main.py": (
        "import puras\n\n"
        "def run(inputs):\n"
        "    return {'answer': puras.request_input('Go on?', {'type': 'boolean'})}\n"
    ),
    "skills/echo/skill.yaml": "entrypoint: main.py:run\n",
    "skills/echo/main.py": "def run(inputs):\n    return {'echoed': inputs.get('text')}\n",
    "skills/sdk/skill.yaml": "entrypoint: main.py:run\n",
    "skills/sdk/main.py": "import puras\n\ndef run(inputs):\n    return {}\n",
    "skills/boom/skill.yaml": "entrypoint: main.py:run\n",
    "skills/boom/main.py": "def run(inputs):\n    raise ValueError('no')\n",
}
POLL = 0.005


def line(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"  {name:40s} p50 {statistics.median(ordered):8.1f} ms   p99 {p99:8.1f} ms"
        f"   n={len(ordered)}"
    )


async def until(tenant: Any, job_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = (await tenant.http.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] in statuses:
            return job
        await asyncio.sleep(POLL)


async def measure(tenant: Any, jobs: int) -> list[str]:
    ask: list[float] = []
    resume: list[float] = []
    plain: list[float] = []
    others: dict[str, list[float]] = {"sdk": [], "boom": []}
    for i in range(jobs):
        t0 = time.perf_counter()
        job_id = (await tenant.http.post("/v1/jobs", json={"skill": "ask", "inputs": {}})).json()[
            "id"
        ]
        await until(tenant, job_id, ("waiting",))
        ask.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        answered = await tenant.http.post(f"/v1/jobs/{job_id}/input", json={"answer": True})
        assert answered.status_code == 200, answered.text
        done = await until(tenant, job_id, ("succeeded", "failed"))
        assert done["status"] == "succeeded", done
        resume.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        job_id = (
            await tenant.http.post("/v1/jobs", json={"skill": "echo", "inputs": {"text": str(i)}})
        ).json()["id"]
        await until(tenant, job_id, ("succeeded",))
        plain.append((time.perf_counter() - t0) * 1000)
        for skill, times in others.items():
            t0 = time.perf_counter()
            job_id = (await tenant.http.post("/v1/jobs", json={"skill": skill})).json()["id"]
            await until(tenant, job_id, ("succeeded", "failed"))
            times.append((time.perf_counter() - t0) * 1000)
    return [
        line("submit → waiting (the question asked)", ask),
        line("answer → result (dispatched again, replayed)", resume),
        line("plain job: submit → result", plain),
        line("a job importing puras: submit → result", others["sdk"]),
        line("a job raising: submit → failed", others["boom"]),
    ]


async def main(jobs: int) -> None:
    from puras_testing.infra import start_infra
    from puras_testing.platform import start_platform

    async with start_infra() as infra, start_platform(infra) as platform:
        tenant = await platform.tenant("bench", credit_usd="100")
        assert (await tenant.push(PROJECT)).status_code == 201
        await measure(tenant, 3)  # warm the deployment cache and the fork server
        report = await measure(tenant, jobs)
    print("\n".join(report))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.jobs))
