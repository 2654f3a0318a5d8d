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
    """Run a deterministic skill's job."""

    stream: ClassVar = streams.WORK
    subject_pattern: ClassVar = subjects.RUN_FUNCTION
    type: Literal["run.function"] = "run.function"
    payload: RunPayload


class RunAgent(Event):
    """Run an agentic skill's job."""

    stream: ClassVar = streams.WORK
    subject_pattern: ClassVar = subjects.RUN_AGENT
    type: Literal["run.agent"] = "run.agent"
    payload: RunPayload
