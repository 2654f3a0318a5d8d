"""NATS subject names: a contract between services. Change one only with a migration note.

Event subjects put the aggregate id right after the family (``job.<job_id>.submitted``,
``usage.<workspace_id>.recorded``) so a consumer can follow one job or one workspace with a
single wildcard filter.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

JOBS_ALL: Final = "job.>"
"""Every job event; the JOBS stream's subject space."""

RUN_FUNCTION: Final = "run.function"
"""Work queue: a deterministic skill's job, taken by exactly one function runner."""

RUN_AGENT: Final = "run.agent"
"""Work queue: an agentic skill's job, taken by exactly one agent runner."""

RUN_FUNCTION_CHILD: Final = "run.function.child"
"""Work queue: a deterministic subagent (a job with a parent), taken from runners' own pool of
slots, so a child never waits behind the parent that is waiting for it."""

RUN_AGENT_CHILD: Final = "run.agent.child"
"""Work queue: an agentic subagent, likewise."""

USAGE_ALL: Final = "usage.>"
LEDGER_POSTED_ALL: Final = "ledger.*.posted"
BALANCE_CHANGED_ALL: Final = "balance.*.changed"
DLQ_ALL: Final = "dlq.>"

PLATFORM_FAMILIES: Final = (
    "deployment",
    "secret",
    "key",
    "workspace",
    "drive",
    "feedback",
    "schedule",
    "webhook",
    "user",
    "member",
)
"""The families carried by the PLATFORM stream, each as ``<family>.<workspace_id>.<verb...>``,
but for ``user.<user_id>.<verb>``: a person is not one workspace's."""


def job(job_id: UUID | str, suffix: str) -> str:
    """``job.<job_id>.<suffix>``; ``suffix`` may be dotted (``step.completed``)."""
    return f"job.{job_id}.{suffix}"


def job_all(job_id: UUID | str) -> str:
    """Every event of one job."""
    return f"job.{job_id}.>"


def job_id_of(subject: str) -> str:
    """The job id in a ``job.<id>.…`` subject."""
    return subject.split(".", 2)[1]


def scoped(family: str, workspace_id: UUID | str, suffix: str) -> str:
    """``<family>.<workspace_id>.<suffix>`` for the USAGE, LEDGER and PLATFORM families."""
    return f"{family}.{workspace_id}.{suffix}"


def dlq(stream: str, consumer: str) -> str:
    """Where a consumer parks a message it gave up on."""
    return f"dlq.{stream.lower()}.{consumer}"


def svc(service: str, verb: str) -> str:
    """A request/reply endpoint owned by ``service`` (``svc.deployments.secrets``)."""
    return f"svc.{service}.{verb}"
