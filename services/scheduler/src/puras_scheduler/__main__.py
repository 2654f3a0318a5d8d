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
from puras_scheduler.dispatch import Dispatcher, Wakeup
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

        # The dispatcher is woken by what can let a queued job go: a batch of new jobs larger
        # than one dispatch takes, credit for a workspace that had none, a freed slot. Spend
        # only grows within a day (a new day is picked up by the dispatcher's poll).
        more = Wakeup(dispatcher.wake)

        async def dispatch_new(uow: UnitOfWork, deliveries: Sequence[Delivery]) -> None:
            # Jobs just queued are dispatched in the same transaction: one commit fewer per job.
            if any(isinstance(d.event, JobSubmitted | JobInputProvided) for d in deliveries):
                more.due |= await dispatcher.dispatch_in(uow) == dispatcher.batch

        credit = Wakeup(dispatcher.wake)

        async def fold_balance(uow: UnitOfWork, d: Delivery) -> None:
            credit.due |= await queue.apply_balance(uow, d)

        for spec, apply, before, after in (
            (JOBS_CONSUMER, queue.apply_job_event, dispatch_new, more.after_commit),
            (BALANCES_CONSUMER, fold_balance, None, credit.after_commit),
            (SPEND_CONSUMER, waiting.apply_spend, None, None),
        ):
            projection = ProjectionRunner(
                js=runtime.js,
                outbox=runtime.outbox,
                spec=spec,
                apply=apply,
                after_commit=after,
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
