"""The tool-use loop of one agent job.

Call the model with the conversation so far; report the step; run the tool calls it made, in
order, and give their results back; repeat until the model ends its turn without calling a
tool, or calls ``set_output`` validly. Between steps the loop checks cancellation and the wall
clock; it never takes more than ``max_steps`` model calls.

``set_output`` (present when the skill has an ``output_schema``): its arguments are validated
against the schema and, when they do not match, the model gets the errors as a tool error and
may call it again; the first valid call ends the run and any tool call after it in the same
response is ignored. A run that ends without one fails with ``agent finished without calling
set_output``. Without an ``output_schema`` the result is ``{"text": <the final answer>}``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from puras_common.drive import DriveError
from puras_common.logging import get_logger
from puras_common.models import Model
from puras_common.schemas import validate
from puras_sandbox import SandboxError

from puras_agent_runner.conversation import Message, Text, ToolCall, ToolResult, text_of
from puras_agent_runner.journal import Journal
from puras_agent_runner.providers import (
    ChatModel,
    ModelRequest,
    ProviderError,
    RetryPolicy,
    call_with_retries,
)
from puras_agent_runner.tools import SetOutputTool, Tool, ToolContext, ToolError, ToolOutput
from puras_agent_runner.tools.output import NAME as SET_OUTPUT

MISSING_OUTPUT = "agent finished without calling set_output"

log = get_logger("puras_agent_runner.loop")


class AgentFailure(Exception):
    """Why the loop failed the job, in the words the job's ``error`` shows."""

    def __init__(self, error: str, *, reason: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.reason = reason
        self.detail = detail


class AgentCancelled(Exception):
    """Cancellation was requested; the loop stopped between steps."""

    def __init__(self, steps: int) -> None:
        super().__init__(f"cancelled after {steps} steps")
        self.steps = steps


@dataclass
class LoopState:
    """What the loop has done so far (read by tests and the runner's log lines)."""

    steps: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    messages: list[Message] = field(default_factory=list)


@dataclass
class AgentLoop:
    chat: ChatModel
    model: Model
    system: str
    first_message: Message
    tools: dict[str, Tool]
    context: ToolContext
    journal: Journal
    retry: RetryPolicy
    cancelled: asyncio.Event
    deadline: float
    """``clock()`` (monotonic seconds) at which the job's timeout runs out."""
    timeout_seconds: int
    max_steps: int = 50
    max_tokens: int = 8192
    state: LoopState = field(default_factory=LoopState)
    clock: Callable[[], float] = field(default=time.monotonic)

    async def run(self) -> Any:
        """The job's result; raises AgentFailure or AgentCancelled."""
        self.state.messages = [self.first_message]
        specs = [t.spec for t in self.tools.values()]
        while True:
            self._check_between_steps()
            if self.state.steps >= self.max_steps:
                raise AgentFailure(
                    f"the agent did not finish within {self.max_steps} steps (model calls)",
                    reason="runtime",
                    detail={"max_steps": self.max_steps},
                )
            self.state.steps += 1
            step = self.state.steps
            started = self.clock()
            request = ModelRequest(self.model.upstream, self.system, list(self.state.messages), specs, self.max_tokens)
            try:
                response = await call_with_retries(functools.partial(self.chat.complete, request), self.retry)
            except ProviderError as exc:
                raise AgentFailure(
                    f"the model provider failed: {exc}",
                    reason="runtime",
                    detail={"provider": exc.provider, "status": exc.status, "step": step},
                ) from None
            self.state.input_tokens += response.input_tokens
            self.state.output_tokens += response.output_tokens
            await self.journal.step(step, self.model, response, int((self.clock() - started) * 1000))
            assistant = Message("assistant", [*([Text(response.text)] if response.text else []), *response.tool_calls])
            self.state.messages.append(assistant)
            if not response.tool_calls:
                return self._final_answer(response.text)
            results, output = await self._run_calls(step, response.tool_calls)
            if output is not _NO_OUTPUT:
                return output
            self.state.messages.append(Message("user", list(results)))

    def _check_between_steps(self) -> None:
        if self.cancelled.is_set():
            raise AgentCancelled(self.state.steps)
        if self.clock() >= self.deadline:
            raise self.timed_out()

    def timed_out(self) -> AgentFailure:
        return AgentFailure(
            f"job exceeded its timeout of {self.timeout_seconds} s "
            "(set timeout_seconds in skill.yaml; the platform maximum is 3600 s)",
            reason="timeout",
            detail={"timeout_seconds": self.timeout_seconds, "steps": self.state.steps},
        )

    def _final_answer(self, text: str) -> Any:
        output = self.tools.get(SET_OUTPUT)
        if isinstance(output, SetOutputTool) and output.required:
            raise AgentFailure(MISSING_OUTPUT, reason="invalid_result", detail={"steps": self.state.steps})
        return {"text": text}

    async def _run_calls(self, step: int, calls: list[ToolCall]) -> tuple[list[ToolResult], Any]:
        results: list[ToolResult] = []
        for call in calls:
            result, accepted = await self._run_one(step, call)
            results.append(result)
            if accepted is not _NO_OUTPUT:
                # set_output ends the run: later calls in this response are ignored.
                return results, accepted
        return results, _NO_OUTPUT

    async def _run_one(self, step: int, call: ToolCall) -> tuple[ToolResult, Any]:
        self.state.tool_calls += 1
        await self.journal.tool_called(step, call)
        started = self.clock()
        output = await self._dispatch(call)
        await self._sync(call.name)
        duration_ms = int((self.clock() - started) * 1000)
        summary = output.summary if output.summary is not None else text_of(output.content)
        await self.journal.tool_completed(
            step, call, is_error=output.is_error, output=summary, duration_ms=duration_ms, detail=output.detail
        )
        accepted: Any = _NO_OUTPUT
        tool = self.tools.get(call.name)
        if isinstance(tool, SetOutputTool) and not output.is_error:
            accepted = tool.output(call.input)
        return ToolResult(call.id, call.name, output.content, output.is_error), accepted

    async def _sync(self, tool: str) -> None:
        """Record (or upload) what the call wrote to the drive, naming the tool as its origin; a
        drive that cannot be reached now is retried at the next call and at teardown."""
        try:
            await self.context.drive.sync(tool=tool)
        except (DriveError, OSError) as exc:
            log.warning("drive files written by a tool call were not saved yet", tool=tool, error=str(exc))

    async def _dispatch(self, call: ToolCall) -> ToolOutput:
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolOutput.text(f"there is no tool named {call.name!r}; available: {', '.join(self.tools)}", is_error=True)
        if call.malformed is not None:
            return ToolOutput.text(f"{call.name}: {call.malformed}", is_error=True)
        if problems := validate(tool.spec.input_schema, call.input):
            lines = "; ".join(f"{p.message} at {p.pointer or '/'}" for p in problems[:10])
            what = "the output does not match the output_schema" if call.name == SET_OUTPUT else "invalid input"
            return ToolOutput.text(f"{call.name}: {what}: {lines}", is_error=True, detail={"problems": len(problems)})
        try:
            return await tool.run(call.input, self.context)
        except ToolError as exc:
            return ToolOutput.text(f"{call.name} failed: {exc.message}", is_error=True, detail=exc.detail)
        except SandboxError as exc:  # e.g. the warm parent died; the next call starts a new one
            return ToolOutput.text(f"{call.name} could not run: {exc}", is_error=True)


class _NoOutput:
    def __repr__(self) -> str:
        return "<no output>"


_NO_OUTPUT: Any = _NoOutput()
