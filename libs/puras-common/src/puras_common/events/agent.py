"""Events of an agentic job's tool-use loop, on the JOBS stream (``job.<job_id>.<type>``).

Published by the agent runner between ``job.started`` and the job's terminal event: one
``agent.started``, then per model response a ``step.completed``, and per tool call a
``tool.called`` and a ``tool.completed``. Texts, inputs and outputs are already masked (secret
values replaced) and cut to :data:`MAX_EVENT_TEXT` characters, so an event stays far below the
bus's 1 MiB message limit.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal
from uuid import UUID

from puras_common import streams
from puras_common.envelope import Event, Payload

MAX_EVENT_TEXT: Final = 16 * 1024
"""Longest text (model text, tool output summary) carried by one agent event, in characters."""


class _AgentEvent(Event):
    stream: ClassVar = streams.JOBS

    job_id: UUID
    """Every agent event is a job's: the id is in its subject, ``job.<job_id>.…``."""


class AgentStartedPayload(Payload):
    attempt: int
    model: str
    """The public slug the loop runs on; when ``model:`` is unset, the default fixed at deployment."""
    provider: str
    upstream_model: str
    tools: tuple[str, ...]
    """The tools offered to the model, built-ins and the skill's own."""
    max_steps: int


class AgentStarted(_AgentEvent):
    """The agent loop of an attempt began, on the model named."""

    subject_pattern: ClassVar = "job.{job_id}.agent.started"
    type: Literal["agent.started"] = "agent.started"
    payload: AgentStartedPayload


class StepCompletedPayload(Payload):
    attempt: int
    step: int
    """1 for the first model response of the attempt."""
    model: str
    stop_reason: str
    """``end_turn``, ``tool_use``, ``max_tokens`` … as the loop understood the response."""
    text: str
    """The response's text, masked and cut to MAX_EVENT_TEXT characters."""
    tool_calls: int
    input_tokens: int
    output_tokens: int
    duration_ms: int


class StepCompleted(_AgentEvent):
    """The model answered one step of the loop."""

    subject_pattern: ClassVar = "job.{job_id}.step.completed"
    type: Literal["step.completed"] = "step.completed"
    payload: StepCompletedPayload


class ToolCalledPayload(Payload):
    attempt: int
    step: int
    call_id: str
    name: str
    input: Any
    """The arguments the model passed, masked; long strings cut."""


class ToolCalled(_AgentEvent):
    """The model asked for a tool call and the runner started it."""

    subject_pattern: ClassVar = "job.{job_id}.tool.called"
    type: Literal["tool.called"] = "tool.called"
    payload: ToolCalledPayload


class ToolCompletedPayload(Payload):
    attempt: int
    step: int
    call_id: str
    name: str
    is_error: bool
    output: str
    """A summary of what went back to the model, masked and cut to MAX_EVENT_TEXT characters."""
    duration_ms: int
    detail: dict[str, Any] | None = None
    """Structured facts about the result (exit code, final URL, drive path …), masked."""


class ToolCompleted(_AgentEvent):
    """A tool call finished; its result went back to the model."""

    subject_pattern: ClassVar = "job.{job_id}.tool.completed"
    type: Literal["tool.completed"] = "tool.completed"
    payload: ToolCompletedPayload
