"""Commands of the WORK stream: each message is taken by exactly one runner."""

from __future__ import annotations

from typing import ClassVar, Literal

from puras_common import streams, subjects
from puras_common.envelope import Event
from puras_common.events.jobs import JobSpec


class RunPayload(JobSpec):
    """Everything a runner needs to run one attempt of a job."""

    attempt: int


class RunFunction(Event):
    """Run a deterministic skill's job (a subagent's on ``run.function.child``)."""

    stream: ClassVar = streams.WORK
    subject_pattern: ClassVar = subjects.RUN_FUNCTION
    type: Literal["run.function"] = "run.function"
    payload: RunPayload

    @property
    def subject(self) -> str:
        return subjects.RUN_FUNCTION_CHILD if self.payload.parent_job_id else subjects.RUN_FUNCTION


class RunAgent(Event):
    """Run an agentic skill's job (a subagent's on ``run.agent.child``)."""

    stream: ClassVar = streams.WORK
    subject_pattern: ClassVar = subjects.RUN_AGENT
    type: Literal["run.agent"] = "run.agent"
    payload: RunPayload

    @property
    def subject(self) -> str:
        return subjects.RUN_AGENT_CHILD if self.payload.parent_job_id else subjects.RUN_AGENT
