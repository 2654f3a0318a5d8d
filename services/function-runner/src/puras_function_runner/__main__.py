"""``python -m puras_function_runner``: runs deterministic skills, each job in its own process."""

from __future__ import annotations

import os

import httpx
from puras_common.attempts import AttemptClient, CancelWatch
from puras_common.bus import ConsumerSpec
from puras_common.consumers import WorkLease, function_runner_work
from puras_common.payloads import PayloadStore
from puras_common.service import ServiceRuntime, run
from puras_jobhost.prepare import Deployments
from puras_jobhost.sandboxing import decide_sandbox
from puras_sandbox import python_for

from puras_function_runner.runner import FunctionRunner
from puras_function_runner.settings import FunctionRunnerSettings


def work_consumer(settings: FunctionRunnerSettings, *, children: bool = False) -> ConsumerSpec:
    lease = WorkLease(settings.lease_seconds, settings.max_deliveries)
    return function_runner_work(lease, children=children)


async def main(settings: FunctionRunnerSettings | None = None) -> None:
    settings = settings or FunctionRunnerSettings.load()
    async with ServiceRuntime(settings) as runtime, httpx.AsyncClient(timeout=60.0) as http:
        token = settings.internal_token.get_secret_value()
        root = os.geteuid() == 0
        uid, gid = (settings.sandbox_uid, settings.sandbox_gid) if root else (None, None)
        python = settings.job_python or python_for(uid, gid)
        sandboxed = decide_sandbox(
            settings.sandbox, environment=settings.environment, uid=uid, gid=gid, log=runtime.log
        )
        deployments = Deployments(
            cache_dir=settings.cache_dir,
            deployments_url=settings.deployments_url,
            token=token,
            http=http,
            uid=uid,
            gid=gid,
            max_warm=settings.max_warm_deployments,
            python=python,
            sandboxed=sandboxed,
            idle_seconds=settings.warm_idle_seconds,
            egress=settings.egress_policy(
                gateway_url=settings.api_base,
                platform_urls=[settings.deployments_url, settings.drive_url],
                also_allow=settings.ssrf_allow,
            ),
        )
        runtime.spawn(deployments.stop_idle_forever(), "idle-fork-servers")
        runtime.log.info("jobs run as", uid=uid if uid is not None else os.getuid(), python=python)
        if not root:
            runtime.log.warning("not running as root: jobs run as this process's own uid")
        cancels = CancelWatch(runtime.nc)
        await cancels.start()
        runner = FunctionRunner(
            settings=settings,
            js=runtime.js,
            nc=runtime.nc,
            deployments=deployments,
            payloads=PayloadStore(settings.drive_url, token=token, client=http),
            attempts=AttemptClient(runtime.nc, runner=settings.instance_id),
            cancels=cancels,
        )
        runtime.checks["work"] = lambda: {"ok": True, "completed": runner.completed}
        for spec, slots in (
            (work_consumer(settings), settings.concurrency),
            (work_consumer(settings, children=True), settings.child_concurrency),
        ):
            runtime.run_work(spec=spec, work=runner.work, concurrency=slots)
        try:
            await runtime.run_until_stopped()
        finally:
            await deployments.close()
            runner.drives.close()


if __name__ == "__main__":
    run(main)
