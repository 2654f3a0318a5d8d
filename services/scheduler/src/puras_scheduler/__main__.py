"""``python -m puras_scheduler``: the job queue."""

from __future__ import annotations

from collections.abc import Sequence

from puras_common import streams, subjects
from puras_common.attempts import CLAIM, COMPLETE
from puras_common.bus import ConsumerSpec, Delivery, ProjectionRunner
from puras_common.events import JobSubmitted
from puras_common.migrate import service_migrations
from puras_common.outbox import UnitOfWork
from puras_common.service import ServiceRuntime, run

from puras_scheduler import queue
from puras_scheduler.attempts import Attempts
from puras_scheduler.dispatch import Dispatcher
from puras_scheduler.settings import SchedulerSettings
from puras_scheduler.watchdog import Watchdog

JOBS_CONSUMER = ConsumerSpec(
    streams.JOBS,
    "scheduler-jobs",
    tuple(
        subjects.job("*", suffix)
        for suffix in ("submitted", "cancel_requested")
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

        async def dispatch_new(uow: UnitOfWork, deliveries: Sequence[Delivery]) -> None:
            # Jobs just queued are dispatched in the same transaction: one commit fewer per job.
            if any(isinstance(d.event, JobSubmitted) for d in deliveries):
                await dispatcher.dispatch_in(uow)

        for spec, apply, before in (
            (JOBS_CONSUMER, queue.apply_job_event, dispatch_new),
            (BALANCES_CONSUMER, queue.apply_balance, None),
        ):
            projection = ProjectionRunner(
                js=runtime.js, outbox=runtime.outbox, spec=spec, apply=apply, after_commit=wake, before_commit=before
            )
            runtime.spawn(projection.run(), spec.durable)
        runtime.spawn(dispatcher.run(), "dispatcher")
        attempts = Attempts(runtime.outbox, max_attempts=settings.max_attempts)

        async def slot_freed() -> None:
            dispatcher.wake.set()

        runtime.spawn(attempts.run(on_completed=slot_freed), "attempts")
        await runtime.nc.subscribe(CLAIM, queue="scheduler", cb=attempts.serve_claim)
        await runtime.nc.subscribe(COMPLETE, queue="scheduler", cb=attempts.serve_complete)
        watchdog = Watchdog(runtime.outbox, grace_seconds=settings.lost_grace_seconds)
        runtime.spawn(watchdog.run(), "watchdog")
        await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
