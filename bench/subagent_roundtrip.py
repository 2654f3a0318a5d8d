"""What a subagent costs the job that waits for it: ``puras.subagent.run`` of a deterministic
echo skill from inside a running job (submit through the gateway, queue, dispatch on the
children's subject, run, the parent's wait), against an app's own ``wait=true`` round trip of
the same skill. Every service runs as its own process, as in production.

    .venv/bin/python bench/subagent_roundtrip.py [--calls 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

PROJECT = {
    "skills/echo/skill.yaml": "entrypoint: main.py:run\n",
    "skills/echo/main.py": "def run(inputs):\n    return {'echoed': inputs.get('text')}\n",
    "skills/parent/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 600\n",
    "skills/parent/main.py": (
        "import time\nfrom puras import subagent\n\n"
        "def run(inputs):\n"
        "    times = []\n"
        "    for i in range(inputs['calls'] + 1):\n"
        "        t0 = time.perf_counter()\n"
        "        subagent.run('echo', {'text': str(i)})\n"
        "        times.append((time.perf_counter() - t0) * 1000)\n"
        "    return times[1:]\n"
    ),
}


async def main(calls: int) -> None:
    from puras_testing.infra import start_infra
    from puras_testing.platform import start_platform

    env = {"PURAS_GATEWAY_SUBAGENT_MAX_CHILDREN": str(calls + 1)}
    async with start_infra() as infra, start_platform(infra, extra_env=env) as platform:
        tenant = await platform.tenant("bench")
        assert (await tenant.push(PROJECT)).status_code == 201
        direct = []
        for i in range(calls + 1):
            t0 = time.perf_counter()
            await tenant.run("echo", {"text": str(i)})
            if i:
                direct.append((time.perf_counter() - t0) * 1000)
        job = await tenant.run("parent", {"calls": calls}, timeout=60)
        assert job["status"] == "succeeded", job
        inside = job["result"]
    print(f"{calls} round trips of a deterministic echo skill:")
    for name, values in (("app, wait=true", direct), ("subagent.run in a job", inside)):
        print(
            f"  {name:24s} median {statistics.median(values):6.1f} ms   min {min(values):6.1f} ms   max {max(values):6.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=30)
    asyncio.run(main(parser.parse_args().calls))
