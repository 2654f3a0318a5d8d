"""``python -m puras_scheduler``: the job queue, and the firing of schedules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from puras_common import consumers
from puras_common.attempts import ATTEMPT, CLAIM, COMPLETE
from puras_common.bus import Delivery, ProjectionRunner
from puras_common.events import JobInputProvided, JobSubmitted
from puras_common.migrate import service_migrations
from puras_common.outbox import UnitOfWork
from puras_common.queue_state import WAITING
from puras_common.service import ServiceRuntime, run

from puras_scheduler import gauges, queue, schedules, waiting
from puras_scheduler.attempts import Attempts
from puras_scheduler.dispatch import Dispatcher
from puras_scheduler.input_requests import InputTimeouts
from puras_scheduler.schedules import Firing
from puras_scheduler.settings import SchedulerSettings
from puras_scheduler.waiting import Waiting
from puras_scheduler.watchdog import Watchdog

JOBS_CONSUMER = consumers.SCHEDULER_JOBS
BALANCES_CONSUMER = consumers.SCHEDULER_BALANCES
SCHEDULES_CONSUMER = consumers.SCHEDULER_SCHEDULES
SPEND_CONSUMER = consumers.SCHEDULER_SPEND


async def main(settings: SchedulerSettings | None = None) -> None:
    settings = settings or SchedulerSettings.load()
    async with ServiceRuntime(
        settings, migrations=service_migrations("scheduler", __file__)
    ) as runtime:
        assert runtime.outbox is not None
        dispatcher = Dispatcher(
            runtime.outbox,
            max_per_workspace=settings.max_concurrency_per_workspace,
            batch=settings.dispatch_batch,
        )

        async def wake(_: Sequence[Delivery]) -> None:
            dispatcher.wake.set()

        async def dispatch_new(uow: UnitOfWork, deliveries: Sequence[Delivery]) -> None:
            # Jobs just queued are dispatched in the same transaction: one commit fewer per job.
            if any(isinstance(d.event, JobSubmitted | JobInputProvided) for d in deliveries):
                await dispatcher.dispatch_in(uow)

        for spec, apply, before in (
            (JOBS_CONSUMER, queue.apply_job_event, dispatch_new),
            (BALANCES_CONSUMER, queue.apply_balance, None),
            (SPEND_CONSUMER, waiting.apply_spend, None),
        ):
            projection = ProjectionRunner(
                js=runtime.js,
                outbox=runtime.outbox,
                spec=spec,
                apply=apply,
                after_commit=wake,
                before_commit=before,
            )
            runtime.spawn(projection.run(), spec.durable)
        runtime.spawn(dispatcher.run(), "dispatcher")
        attempts = Attempts(runtime.outbox, max_attempts=settings.max_attempts, nc=runtime.nc)

        async def slot_freed() -> None:
            dispatcher.wake.set()

        runtime.spawn(attempts.run(on_completed=slot_freed), "attempts")
        await runtime.nc.subscribe(CLAIM, queue="scheduler", cb=attempts.serve_claim)
        await runtime.nc.subscribe(ATTEMPT, queue="scheduler", cb=attempts.serve_attempt)
        await runtime.nc.subscribe(COMPLETE, queue="scheduler", cb=attempts.serve_complete)
        watchdog = Watchdog(runtime.outbox, grace_seconds=settings.lost_grace_seconds)
        runtime.spawn(watchdog.run(), "watchdog")
        runtime.spawn(InputTimeouts(runtime.outbox).run(), "input-timeouts")
        firing = Firing(runtime.outbox, grace=timedelta(seconds=settings.schedule_grace_seconds))

        async def timing_changed(_: Sequence[Delivery]) -> None:
            firing.wake.set()

        runtime.spawn(
            ProjectionRunner(
                js=runtime.js,
                outbox=runtime.outbox,
                spec=SCHEDULES_CONSUMER,
                apply=schedules.apply,
                after_commit=timing_changed,
            ).run(),
            SCHEDULES_CONSUMER.durable,
        )
        runtime.spawn(firing.run(), "schedules")
        reasons = Waiting(runtime.outbox, max_per_workspace=settings.max_concurrency_per_workspace)
        await runtime.nc.subscribe(WAITING, queue="scheduler", cb=reasons.serve)
        runtime.spawn(reasons.run(), "waiting-reasons")
        runtime.spawn(
            gauges.keep_measuring(
                runtime.db, max_per_workspace=settings.max_concurrency_per_workspace
            ),
            "queue-gauges",
        )
        await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
