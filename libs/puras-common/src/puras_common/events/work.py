"""Commands of the WORK stream: each message is taken by exactly one runner."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from puras_common import streams, subjects
from puras_common.envelope import Event
from puras_common.events.jobs import JobSpec, ResumeState


class RunPayload(JobSpec):
    """Everything a runner needs to run one attempt of a job."""

    attempt: int
    resume: ResumeState | None = None
    """Set when the job waited for input and now runs on with the answers."""


class _RunCommand(Event):
    """A job handed to the runners: whose it is and which job, always."""

    stream: ClassVar = streams.WORK

    workspace_id: UUID
    job_id: UUID


class RunFunction(_RunCommand):
    """Run a deterministic skill's job (a subagent's on ``run.function.child``)."""

    subject_pattern: ClassVar = subjects.RUN_FUNCTION
    type: Literal["run.function"] = "run.function"
    payload: RunPayload

    @property
    def subject(self) -> str:
        return subjects.RUN_FUNCTION_CHILD if self.payload.parent_job_id else subjects.RUN_FUNCTION


class RunAgent(_RunCommand):
    """Run an agentic skill's job (a subagent's on ``run.agent.child``)."""

    subject_pattern: ClassVar = subjects.RUN_AGENT
    type: Literal["run.agent"] = "run.agent"
    payload: RunPayload

    @property
    def subject(self) -> str:
        return subjects.RUN_AGENT_CHILD if self.payload.parent_job_id else subjects.RUN_AGENT
