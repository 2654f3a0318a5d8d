"""``python -m puras_function_runner``: runs deterministic skills, each job in its own process."""

from __future__ import annotations

import os

import httpx
from puras_common import streams, subjects
from puras_common.attempts import AttemptClient, CancelWatch
from puras_common.bus import ConsumerSpec, WorkRunner
from puras_common.payloads import PayloadStore
from puras_common.service import ServiceRuntime, run
from puras_sandbox import bwrap_available, python_for

from puras_function_runner.prepare import Deployments
from puras_function_runner.runner import FunctionRunner
from puras_function_runner.settings import FunctionRunnerSettings


def work_consumer(settings: FunctionRunnerSettings, *, children: bool = False) -> ConsumerSpec:
    return ConsumerSpec(
        streams.WORK,
        "function-runner-children" if children else "function-runner-work",
        (subjects.RUN_FUNCTION_CHILD if children else subjects.RUN_FUNCTION,),
        ack_wait_seconds=settings.lease_seconds,
        max_deliver=settings.max_deliveries,
    )


async def main(settings: FunctionRunnerSettings | None = None) -> None:
    settings = settings or FunctionRunnerSettings.load()
    async with ServiceRuntime(settings) as runtime, httpx.AsyncClient(timeout=60.0) as http:
        token = settings.internal_token.get_secret_value()
        root = os.geteuid() == 0
        uid, gid = (settings.sandbox_uid, settings.sandbox_gid) if root else (None, None)
        python = settings.job_python or python_for(uid, gid)
        sandboxed = settings.sandbox != "none" and bwrap_available(uid, gid)
        if settings.sandbox == "bwrap" and not sandboxed:
            raise RuntimeError("PURAS_FUNCTION_RUNNER_SANDBOX=bwrap but bubblewrap cannot run here (apt-get install bubblewrap)")
        if sandboxed:
            runtime.log.info("jobs run in bubblewrap: one sandboxed warm parent per deployment and workspace")
        else:
            runtime.log.warning(
                "bubblewrap is not available: jobs run WITHOUT namespaces (shared filesystem view, host network); "
                "install bubblewrap for isolation (see docs/isolation.md)"
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
        for spec, slots in ((work_consumer(settings), settings.concurrency), (work_consumer(settings, children=True), settings.child_concurrency)):
            work = WorkRunner(js=runtime.js, spec=spec, work=runner.work, concurrency=slots)
            runtime.spawn(work.run(), spec.durable)
        try:
            await runtime.run_until_stopped()
        finally:
            await deployments.close()


if __name__ == "__main__":
    run(main)
