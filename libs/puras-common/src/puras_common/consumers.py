"""Every durable consumer of the platform, by the service that reads it.

This is the one table of who reads what on the bus. The provisioning step (``puras up``,
``puras admin provision``, the test harness) creates the streams and these consumers with an
admin NATS user before any service starts; a service only binds to its own consumers, and its
NATS user (:mod:`puras_common.access`) may read nothing else. A new consumer is one line here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from nats.js import JetStreamContext

from puras_common import streams, subjects
from puras_common.bus import ConsumerSpec, ensure_consumer
from puras_common.streams import DAY, JobsLimits, ensure_streams


@dataclass(frozen=True)
class WorkLease:
    """How long a function runner holds a WORK message between heartbeats, and how many
    deliveries a job gets, read by provisioning from the function runner's own settings
    (``PURAS_FUNCTION_RUNNER_LEASE_SECONDS``, ``PURAS_FUNCTION_RUNNER_MAX_DELIVERIES``)."""

    seconds: float = 30.0
    max_deliveries: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkLease:
        env = os.environ if env is None else env
        return cls(
            seconds=float(env.get("PURAS_FUNCTION_RUNNER_LEASE_SECONDS", cls.seconds)),
            max_deliveries=int(env.get("PURAS_FUNCTION_RUNNER_MAX_DELIVERIES", cls.max_deliveries)),
        )


GATEWAY_JOBS: Final = ConsumerSpec(streams.JOBS, "gateway-jobs", (subjects.JOBS_ALL,))
GATEWAY_CATALOG: Final = ConsumerSpec(streams.PLATFORM, "gateway-catalog", ("deployment.>",))
GATEWAY_LEDGER: Final = ConsumerSpec(
    streams.LEDGER, "gateway-ledger", (subjects.LEDGER_POSTED_ALL,)
)
GATEWAY_SCHEDULES: Final = ConsumerSpec(
    streams.PLATFORM, "gateway-schedules", ("schedule.*.fired",)
)
SCHEDULER_JOBS: Final = ConsumerSpec(
    streams.JOBS,
    "scheduler-jobs",
    tuple(
        subjects.job("*", suffix) for suffix in ("submitted", "cancel_requested", "input_provided")
    ),
)
SCHEDULER_BALANCES: Final = ConsumerSpec(
    streams.LEDGER, "scheduler-balances", (subjects.BALANCE_CHANGED_ALL,)
)
SCHEDULER_SPEND: Final = ConsumerSpec(
    streams.LEDGER, "scheduler-spend", (subjects.LEDGER_POSTED_ALL,)
)
SCHEDULER_SCHEDULES: Final = ConsumerSpec(
    streams.PLATFORM, "scheduler-schedules", ("schedule.*.set", "schedule.*.deleted")
)
BILLING_GRANTS: Final = ConsumerSpec(
    streams.PLATFORM, "billing-grants", ("workspace.*.credit_granted",)
)
BILLING_USAGE: Final = ConsumerSpec(streams.USAGE, "billing-usage", (subjects.USAGE_ALL,))
DRIVE_OBJECTS: Final = ConsumerSpec(streams.PLATFORM, "drive-objects", ("drive.>",))
WEBHOOKS_JOBS: Final = ConsumerSpec(
    streams.JOBS,
    "webhooks-jobs",
    tuple(
        subjects.job("*", suffix)
        for suffix in ("submitted", "succeeded", "failed", "cancelled", "input_requested")
    ),
)
AGENT_RUNNER_WORK: Final = ConsumerSpec(
    streams.WORK, "agent-runner-work", (subjects.RUN_AGENT,), ack_wait_seconds=60.0
)
AGENT_RUNNER_CHILDREN: Final = ConsumerSpec(
    streams.WORK, "agent-runner-children", (subjects.RUN_AGENT_CHILD,), ack_wait_seconds=60.0
)


def function_runner_work(lease: WorkLease, *, children: bool = False) -> ConsumerSpec:
    """The function runner's WORK consumer (top-level jobs, or subagents)."""
    return ConsumerSpec(
        streams.WORK,
        "function-runner-children" if children else "function-runner-work",
        (subjects.RUN_FUNCTION_CHILD if children else subjects.RUN_FUNCTION,),
        ack_wait_seconds=lease.seconds,
        max_deliver=lease.max_deliveries,
    )


def durable_consumers(lease: WorkLease | None = None) -> dict[str, tuple[ConsumerSpec, ...]]:
    """Each service's durable consumers."""
    lease = lease or WorkLease()
    return {
        "gateway": (GATEWAY_JOBS, GATEWAY_CATALOG, GATEWAY_LEDGER, GATEWAY_SCHEDULES),
        "deployments": (),
        "scheduler": (SCHEDULER_JOBS, SCHEDULER_BALANCES, SCHEDULER_SPEND, SCHEDULER_SCHEDULES),
        "function-runner": (
            function_runner_work(lease),
            function_runner_work(lease, children=True),
        ),
        "agent-runner": (AGENT_RUNNER_WORK, AGENT_RUNNER_CHILDREN),
        "billing": (BILLING_GRANTS, BILLING_USAGE),
        "drive": (DRIVE_OBJECTS,),
        "webhooks": (WEBHOOKS_JOBS,),
    }


EPHEMERAL_READERS: Final[dict[str, tuple[str, ...]]] = {
    "gateway": ("JOBS",),  # live fan-out and the backlog of one job's events (SSE)
}
"""Services that open short-lived consumers of their own (and read stored messages directly) on
a stream; they may create, read and delete consumers there, but never the durable ones above."""


def all_durables() -> tuple[ConsumerSpec, ...]:
    return tuple(spec for specs in durable_consumers().values() for spec in specs)


def jobs_limits(env: Mapping[str, str] | None = None) -> JobsLimits:
    """The JOBS stream's limits from ``PURAS_JOBS_STREAM_MAX_AGE_DAYS``, ``…_MAX_BYTES`` and
    ``…_MAX_MSGS`` (the defaults of :class:`JobsLimits` otherwise)."""
    env = os.environ if env is None else env
    default = JobsLimits()
    age = env.get("PURAS_JOBS_STREAM_MAX_AGE_DAYS")
    return JobsLimits(
        max_age_seconds=float(age) * DAY if age else default.max_age_seconds,
        max_bytes=int(env.get("PURAS_JOBS_STREAM_MAX_BYTES", default.max_bytes)),
        max_msgs=int(env.get("PURAS_JOBS_STREAM_MAX_MSGS", default.max_msgs)),
    )


async def provision_bus(
    js: JetStreamContext, *, replicas: int = 1, env: Mapping[str, str] | None = None
) -> None:
    """Create (or bring up to date) every stream and every durable consumer; run with the admin
    NATS user before the services start. Idempotent. The JOBS stream's limits and the function
    runner's lease come from ``env`` (the platform's environment; default ``os.environ``)."""
    await ensure_streams(js, replicas=replicas, jobs=jobs_limits(env))
    for specs in durable_consumers(WorkLease.from_env(env)).values():
        for spec in specs:
            await ensure_consumer(js, spec)
