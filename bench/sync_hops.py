"""Where a ``wait=true`` echo job's time goes, read off the bus.

Starts the platform as ``make bench`` does, subscribes to every subject with the admin
credentials, and runs sequential ``wait=true`` echo jobs. For each job it notes when each
message that names the job (its events, the work command, the scheduler's requests, the
replies) crossed NATS, counted from the moment the client sent the request, and prints the
median of each step over the runs, in order, with the client's answer last. A step is a
subject (the job id replaced by ``<job>``) and its occurrence: ``#0`` is the publish, later
ones are the deliveries to consumers.

    .venv/bin/python bench/sync_hops.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
import rawhttp
import workloads
from harness import platform
from nats.aio.msg import Msg
from puras_common.bus import connect_nats


def _step(subject: str, data: bytes, job_id: str) -> str | None:
    """What a message is, as a step of the job's path; None if it is not about the job."""
    if job_id in subject:
        return subject.replace(job_id, "<job>")
    if job_id.encode() in data:
        return subject.split(".")[0] if subject.startswith(("_INBOX", "$JS")) else subject
    return None


async def main(runs: int) -> None:
    async with platform() as running:
        key = await running.workspace("hops")
        await running.push(key, Path(__file__).parent / "projects" / "echo")
        await workloads.sync_round_trip(running, key, m=20)
        nc = await connect_nats(running.config.nats_urls["admin"], name="bench-hops")
        seen: list[tuple[float, str, bytes]] = []

        async def note(msg: Msg) -> None:
            seen.append((time.perf_counter(), msg.subject, msg.data))

        await nc.subscribe(">", cb=note)
        steps: dict[str, list[float]] = defaultdict(list)
        body = orjson.dumps(workloads.ECHO)
        try:
            async with rawhttp.Connection(running.url, token=key) as http:
                for _ in range(runs):
                    seen.clear()
                    sent = time.perf_counter()
                    status, answer = await http.post("/v1/jobs?wait=true", body)
                    answered = time.perf_counter()
                    if status != 200:
                        raise RuntimeError(f"sync submit answered {status}: {answer[:300]!r}")
                    job_id = orjson.loads(answer)["id"]
                    counts: dict[str, int] = defaultdict(int)
                    for at, subject, data in seen:
                        step = _step(subject, data, job_id)
                        if step is None or at > answered:
                            continue
                        steps[f"{step} #{counts[step]}"].append((at - sent) * 1000)
                        counts[step] += 1
                    steps["client has the answer"].append((answered - sent) * 1000)
        finally:
            await nc.close()
    rows = sorted(
        (statistics.median(v), name, len(v)) for name, v in steps.items() if len(v) >= runs // 2
    )
    for ms, name, n in rows:
        print(f"{ms:8.2f} ms  {name}  ({n} of {runs} runs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    asyncio.run(main(parser.parse_args().runs))
