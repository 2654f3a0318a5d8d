"""Warm start and throughput of the function runner, on the real platform.

Starts NATS, PostgreSQL and every service (as ``make test`` does), pushes an echo skill whose
``run()`` records when it starts, sets a skillpack secret (so every job fetches its secrets, as
production does), then measures:

1. **runner: message → run()** — a function runner in this process, with the platform's
   deployments service behind it, runs attempts exactly as it does for a WORK message it has
   just taken (``started`` event, secrets request/reply, cached deployment, per-job workdir and
   ``./drive``, fork from the warm parent, rlimits, env), from the moment it holds the message
   to the moment the skill's ``run()`` starts; unsandboxed and in bubblewrap. The scheduler's
   claim round trip (attempt fencing) is left out here; part 3 includes it. A second series
   starts with the secrets already in hand, as ``work()`` has them when they arrive during the
   claim.
2. **runner: jobs/s** — the same, many attempts at once.
3. **platform: dispatch → run() and jobs/s** — jobs submitted over HTTP to the running platform
   (gateway → scheduler → WORK → runner, claim and all): from the scheduler's ``run.function``
   to ``run()``, and the rate of a burst of async submits until the last one has finished.

    .venv/bin/python bench/function_warm_start.py [--runs N] [--burst N] [--json]

Targets (ARCHITECTURE §4): message → run() p50 under 2 ms unsandboxed, under 5 ms sandboxed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform as host
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from puras_common.access import inbox_prefix
from puras_common.attempts import AttemptClient, CancelWatch
from puras_common.bus import connect_nats
from puras_common.events import JobKind, RunFunction, RunPayload
from puras_common.ids import new_id
from puras_common.payloads import PayloadStore
from puras_function_runner.runner import Attempt, FunctionRunner
from puras_function_runner.settings import FunctionRunnerSettings
from puras_jobhost.prepare import Deployments
from puras_sandbox import bwrap_available, python_for
from puras_testing import start_infra
from puras_testing.platform import Platform, Tenant, start_platform

ECHO = {
    "skills/echo/skill.yaml": "description: Echo with timestamps.\nentrypoint: main.py:run\n",
    "skills/echo/main.py": (
        "import time\n\n"
        "def run(inputs):\n"
        "    return {'started_ns': time.monotonic_ns(), 'started_wall_ns': time.time_ns(), 'echo': inputs}\n"
    ),
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50), 3),
        "p90_ms": round(pct(values, 90), 3),
        "p99_ms": round(pct(values, 99), 3),
        "min_ms": round(min(values), 3),
    }


class InProcessRunner:
    """A function runner in this process, wired to the platform's deployments service and NATS."""

    def __init__(
        self, plat: Platform, deployment: dict[str, Any], tenant: Tenant, *, sandboxed: bool
    ) -> None:
        self.plat = plat
        self.deployment = deployment
        self.tenant = tenant
        self.sandboxed = sandboxed
        self.cache = Path(tempfile.mkdtemp(prefix="puras-bench-runner-"))
        self.cache.chmod(0o711)

    async def __aenter__(self) -> InProcessRunner:
        creds = self.plat.config.credentials
        self.nc = await connect_nats(
            self.plat.infra.nats_url("function-runner"),
            name="bench-runner",
            inbox_prefix=inbox_prefix("function-runner"),
        )
        self.http = httpx.AsyncClient(timeout=60)
        root = os.geteuid() == 0
        uid = 65534 if root else None
        env = self.plat.config.env_for("function-runner")
        settings = FunctionRunnerSettings(
            cache_dir=self.cache,
            deployments_url=env["PURAS_DEPLOYMENTS_URL"],
            drive_url=env["PURAS_DRIVE_URL"],
            api_base=env["PURAS_API_BASE"],
            internal_token=creds.internal_token,
            job_token_key=creds.job_token_key,
        )
        self.deployments = Deployments(
            cache_dir=self.cache,
            deployments_url=settings.deployments_url,
            token=creds.internal_token,
            http=self.http,
            uid=uid,
            gid=uid,
            max_warm=8,
            python=python_for(uid, uid),
            sandboxed=self.sandboxed,
            # As the service runs it: a networked sandbox's only way out is the egress proxy.
            egress=settings.egress_policy(
                gateway_url=settings.api_base,
                platform_urls=[settings.deployments_url, settings.drive_url],
            ),
        )
        self.cancels = CancelWatch(self.nc)
        await self.cancels.start()
        self.runner = FunctionRunner(
            settings=settings,
            js=self.nc.jetstream(),
            nc=self.nc,
            deployments=self.deployments,
            payloads=PayloadStore(settings.drive_url, token=creds.internal_token, client=self.http),
            attempts=AttemptClient(self.nc, runner="bench"),
            cancels=self.cancels,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.deployments.close()
        await self.http.aclose()
        await self.nc.close()
        shutil.rmtree(self.cache, ignore_errors=True)

    def attempt(self, i: int) -> Attempt:
        d = self.deployment
        command = RunFunction.new(
            RunPayload(
                skill_name="echo",
                skillpack_id=uuid.UUID(d["skillpack_id"]),
                skillpack_slug=d["skillpack"],
                owner_workspace_id=uuid.UUID(self.tenant.id),
                deployment_id=uuid.UUID(d["id"]),
                version=d["version"],
                kind=JobKind.FUNCTION,
                entrypoint="main.py:run",
                timeout_seconds=60,
                inputs={"i": i},
                attempt=1,
            ),
            producer="bench",
            workspace_id=uuid.UUID(self.tenant.id),
            job_id=new_id(),
        )
        return Attempt(command, 1, asyncio.Event())

    async def one(self, i: int, *, secrets_in_hand: bool = False) -> float:
        """Milliseconds from holding the message to run() starting. ``secrets_in_hand``: as when
        the secrets arrived while the scheduler answered the claim (``work()`` overlaps them)."""
        attempt = self.attempt(i)
        if secrets_in_hand:
            fetched: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
            fetched.set_result(
                await self.runner._secrets(attempt.job_id, self.runner._job_token(attempt.command))
            )
            attempt.fetching = fetched  # type: ignore[assignment]
        t0 = time.monotonic_ns()
        outcome, payload = await self.runner._attempt(attempt)
        if outcome != "job.succeeded":
            raise RuntimeError(f"bench job failed: {payload}")
        return (payload.result["started_ns"] - t0) / 1e6

    async def latency(
        self, runs: int, warmup: int = 30, *, secrets_in_hand: bool = False
    ) -> dict[str, float]:
        for i in range(warmup):
            await self.one(i, secrets_in_hand=secrets_in_hand)
        return summary([await self.one(i, secrets_in_hand=secrets_in_hand) for i in range(runs)])

    async def throughput(self, jobs: int, in_flight: int) -> dict[str, Any]:
        counter = iter(range(jobs))

        async def worker() -> None:
            for i in counter:
                await self.one(i)

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.monotonic() - t0
        return {
            "jobs": jobs,
            "in_flight": in_flight,
            "seconds": round(elapsed, 2),
            "jobs_per_s": round(jobs / elapsed, 1),
        }


async def platform_numbers(
    plat: Platform, tenant: Tenant, *, runs: int, burst: int
) -> dict[str, Any]:
    """Jobs through the whole platform: dispatch → run() latency, submit → result, burst rate."""
    nc = await connect_nats(plat.infra.nats_url(), name="bench-tap")
    dispatched: dict[str, datetime] = {}
    finished: set[str] = set()
    failed: dict[str, str] = {}
    all_done = asyncio.Event()
    expected: set[str] = set()

    async def on_event(msg: Any) -> None:
        body = orjson.loads(msg.data)
        if body["type"] == "run.function":
            dispatched[body["job_id"]] = datetime.fromisoformat(body["occurred_at"])
        else:
            finished.add(body["job_id"])
            if body["type"] != "job.succeeded":
                failed[body["job_id"]] = str(body["payload"].get("error"))
            if expected and expected <= finished:
                all_done.set()

    sub = await nc.subscribe("run.function", cb=on_event)
    done_sub = await nc.subscribe("job.*.succeeded", cb=on_event)
    failed_sub = await nc.subscribe("job.*.failed", cb=on_event)
    try:
        for i in range(20):  # warm: the runner prepares the deployment and starts its warm parent
            await tenant.run("echo", {"i": i})
        to_run, round_trip = [], []
        for i in range(runs):
            t0 = time.monotonic()
            job = await tenant.run("echo", {"i": i})
            round_trip.append((time.monotonic() - t0) * 1000)
            started = job["result"]["started_wall_ns"] / 1e9
            to_run.append((started - dispatched[job["id"]].timestamp()) * 1000)
        t0 = time.monotonic()
        expected.update(await asyncio.gather(*(submit(tenant, i) for i in range(burst))))
        if not expected <= finished:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_done.wait(), 300)
        elapsed = time.monotonic() - t0
    finally:
        await sub.unsubscribe()
        await done_sub.unsubscribe()
        await failed_sub.unsubscribe()
        await nc.close()
    return {
        "dispatch_to_run": summary(to_run),
        "submit_to_result_wait_true": summary(round_trip),
        "burst": {
            "jobs": burst,
            "seconds": round(elapsed, 2),
            "jobs_per_s": round(burst / elapsed, 1),
            "unfinished": len(expected - finished),
            "failed": len(set(failed) & expected),
            "first_failure": next(iter(failed.values()), None),
        },
    }


async def submit(tenant: Tenant, i: int) -> str:
    response = await tenant.http.post("/v1/jobs", json={"skill": "echo", "inputs": {"i": i}})
    response.raise_for_status()
    return response.json()["id"]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    root = os.geteuid() == 0
    can_sandbox = bwrap_available(65534 if root else None, 65534 if root else None)
    report: dict[str, Any] = {
        "host": {
            "cpus": os.cpu_count(),
            "kernel": host.release(),
            "python": host.python_version(),
            "loadavg_at_start": os.getloadavg(),
        }
    }
    for platform_sandbox in ["none", "auto"] if can_sandbox else ["none"]:
        label = "platform_sandboxed" if platform_sandbox == "auto" else "platform_unsandboxed"
        async with (
            start_infra() as infra,
            start_platform(
                infra, extra_env={"PURAS_FUNCTION_RUNNER_SANDBOX": platform_sandbox}
            ) as plat,
        ):
            tenant = await plat.tenant("bench")
            pushed = await tenant.push(ECHO)
            pushed.raise_for_status()
            deployment = pushed.json()
            await tenant.http.put(
                "/v1/secrets/BENCH_TOKEN", json={"value": "a-secret-every-job-receives"}
            )
            if platform_sandbox == "none":
                for sandboxed in [False, True] if can_sandbox else [False]:
                    key = "runner_sandboxed" if sandboxed else "runner_unsandboxed"
                    async with InProcessRunner(
                        plat, deployment, tenant, sandboxed=sandboxed
                    ) as runner:
                        report[key] = {
                            "message_to_run": await runner.latency(args.runs),
                            "message_to_run_secrets_in_hand": await runner.latency(
                                args.runs, secrets_in_hand=True
                            ),
                            "throughput": await runner.throughput(args.burst, in_flight=16),
                        }
            report[label] = await platform_numbers(plat, tenant, runs=args.runs, burst=args.burst)
    report["host"]["loadavg_at_end"] = os.getloadavg()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=300, help="jobs measured one after another, per series"
    )
    parser.add_argument("--burst", type=int, default=500, help="jobs in each throughput series")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    report = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"host: {report['host']}")
    for key, value in report.items():
        if key != "host":
            print(f"\n{key}:")
            for name, numbers in value.items():
                print(f"  {name}: {numbers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
