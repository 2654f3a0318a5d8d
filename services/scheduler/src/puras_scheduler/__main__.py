"""``python -m puras_scheduler``: the job queue."""

from __future__ import annotations

from collections.abc import Sequence

from puras_common import streams, subjects
from puras_common.bus import ConsumerSpec, Delivery, ProjectionRunner
from puras_common.migrate import service_migrations
from puras_common.service import ServiceRuntime, run

from puras_scheduler import queue
from puras_scheduler.dispatch import Dispatcher
from puras_scheduler.settings import SchedulerSettings

JOBS_CONSUMER = ConsumerSpec(
    streams.JOBS,
    "scheduler-jobs",
    tuple(
        subjects.job("*", suffix)
        for suffix in ("submitted", "started", "succeeded", "failed", "cancelled", "cancel_requested")
    ),
)
BALANCES_CONSUMER = ConsumerSpec(streams.LEDGER, "scheduler-balances", (subjects.BALANCE_CHANGED_ALL,))


async def main(settings: SchedulerSettings | None = None) -> None:
    settings = settings or SchedulerSettings.load()
    async with ServiceRuntime(settings, migrations=service_migrations("scheduler", __file__)) as runtime:
        assert runtime.outbox is not None
        dispatcher = Dispatcher(
            runtime.outbox, max_per_workspace=settings.max_concurrency_per_workspace, batch=settings.dispatch_batch
        )

        async def wake(_: Sequence[Delivery]) -> None:
            dispatcher.wake.set()

        for spec, apply in ((JOBS_CONSUMER, queue.apply_job_event), (BALANCES_CONSUMER, queue.apply_balance)):
            projection = ProjectionRunner(js=runtime.js, outbox=runtime.outbox, spec=spec, apply=apply, after_commit=wake)
            runtime.spawn(projection.run(), spec.durable)
        runtime.spawn(dispatcher.run(), "dispatcher")
        await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
