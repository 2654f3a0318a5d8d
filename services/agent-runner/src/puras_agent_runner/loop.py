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

``request_input``: a valid call ends the attempt with :class:`InputNeeded`, carrying what the
loop needs to run on (:meth:`AgentLoop.saved`); the job waits, and a later attempt runs on with
the answer as that call's result (``run(resume=…, answer=…)``). Tool calls the model made after
it in the same response are not run; the model hears so, and may call them again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from puras_common.drive import DriveError
from puras_common.input_requests import QuestionError
from puras_common.logging import get_logger
from puras_common.observability import observe_call
from puras_common.schemas import validate_off_loop
from puras_pricing.models import Model
from puras_sandbox import SandboxError

from puras_agent_runner.budget import CallBudget, NotBudgeted
from puras_agent_runner.conversation import (
    Message,
    Text,
    ToolCall,
    ToolResult,
    dump_messages,
    load_messages,
    text_of,
)
from puras_agent_runner.journal import Journal
from puras_agent_runner.providers import (
    ChatModel,
    ModelRequest,
    ProviderError,
    RetryPolicy,
    call_with_retries,
)
from puras_agent_runner.tools import SetOutputTool, Tool, ToolContext, ToolError, ToolOutput
from puras_agent_runner.tools.asking import RequestInputTool
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


class InputNeeded(Exception):
    """The model asked a valid question (``request_input``): the attempt ends, the job waits."""

    def __init__(
        self,
        *,
        call: ToolCall,
        prompt: str,
        schema: dict[str, Any],
        timeout_seconds: int,
        done: list[ToolResult],
        later: list[ToolCall],
    ) -> None:
        super().__init__(prompt)
        self.call = call
        self.prompt = prompt
        self.schema = schema
        self.timeout_seconds = timeout_seconds
        self.done = done
        """Results of the calls before it in the same response."""
        self.later = later
        """Calls after it in the same response, not run."""


NOT_RUN = (
    "not run: the job stopped to wait for the answer to request_input first; "
    "call it again if you still need it"
)


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
    budget: CallBudget | None = None
    """Holds each call's cost before it is made; None only where nothing is billed (tests)."""
    state: LoopState = field(default_factory=LoopState)
    clock: Callable[[], float] = field(default=time.monotonic)

    async def run(self, *, resume: dict[str, Any] | None = None, answer: Any = None) -> Any:
        """The job's result; raises AgentFailure, AgentCancelled or InputNeeded. ``resume`` is
        what :meth:`saved` kept when the job asked, ``answer`` the answer it got."""
        if resume is None:
            self.state.messages = [self.first_message]
        else:
            await self._run_on(resume, answer)
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
            request = ModelRequest(
                self.model.upstream, self.system, list(self.state.messages), specs, self.max_tokens
            )
            hold_id = None
            if self.budget is not None:
                try:
                    hold_id, max_tokens = await self.budget.hold(request)
                except NotBudgeted as refused:
                    raise AgentFailure(
                        refused.error, reason=refused.reason, detail=refused.detail
                    ) from None
                request = dataclasses.replace(request, max_tokens=max_tokens)
            try:
                response = await observe_call(
                    self.chat.provider,
                    functools.partial(
                        call_with_retries,
                        functools.partial(self.chat.complete, request),
                        self.retry,
                    ),
                )
            except BaseException as exc:
                if hold_id is not None and self.budget is not None:
                    await asyncio.shield(self.budget.client.release(hold_id))
                if isinstance(exc, ProviderError):
                    raise AgentFailure(
                        f"the model provider failed: {exc}",
                        reason="runtime",
                        detail={"provider": exc.provider, "status": exc.status, "step": step},
                    ) from None
                raise
            self.state.input_tokens += response.input_tokens
            self.state.output_tokens += response.output_tokens
            await self.journal.step(
                step, self.model, response, int((self.clock() - started) * 1000), hold_id=hold_id
            )
            assistant = Message(
                "assistant",
                [*([Text(response.text)] if response.text else []), *response.tool_calls],
            )
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
            raise AgentFailure(
                MISSING_OUTPUT, reason="invalid_result", detail={"steps": self.state.steps}
            )
        return {"text": text}

    def saved(self, needed: InputNeeded) -> dict[str, Any]:
        """What the loop runs on from once the question ``needed`` is answered (JSON)."""
        return {
            "messages": dump_messages(self.state.messages),
            "steps": self.state.steps,
            "call": dump_messages([Message("assistant", [needed.call, *needed.later])])[0],
            "done": dump_messages([Message("user", list(needed.done))])[0],
        }

    async def _run_on(self, saved: dict[str, Any], answer: Any) -> None:
        """Back to where the job asked: the answer is the question's result, and the calls the
        model made after it were not run."""
        self.state.messages = load_messages(saved["messages"])
        self.state.steps = saved["steps"]
        call, *later = load_messages([saved["call"]])[0].blocks
        done = load_messages([saved["done"]])[0].blocks
        assert isinstance(call, ToolCall)
        text = json.dumps(answer, ensure_ascii=False)
        await self.journal.tool_completed(
            self.state.steps, call, is_error=False, output=text, duration_ms=0, detail=None
        )
        results = [
            *done,
            ToolResult(call.id, call.name, (Text(text),)),
            *(
                ToolResult(c.id, c.name, (Text(NOT_RUN),), is_error=True)
                for c in later
                if isinstance(c, ToolCall)
            ),
        ]
        self.state.messages.append(Message("user", results))

    async def _asks(self, call: ToolCall) -> tuple[str, dict[str, Any], int] | None:
        """The question a ``request_input`` call asks, if the platform will wait on it; None
        sends the call down the usual path, which tells the model what is wrong with it."""
        tool = self.tools.get(call.name)
        if not isinstance(tool, RequestInputTool) or call.malformed is not None:
            return None
        if await validate_off_loop(tool.spec.input_schema, call.input):
            return None
        try:
            return tool.question(call.input)
        except QuestionError:
            return None

    async def _run_calls(self, step: int, calls: list[ToolCall]) -> tuple[list[ToolResult], Any]:
        results: list[ToolResult] = []
        for i, call in enumerate(calls):
            if (question := await self._asks(call)) is not None:
                self.state.tool_calls += 1
                await self.journal.tool_called(step, call)
                prompt, schema, timeout = question
                raise InputNeeded(
                    call=call,
                    prompt=prompt,
                    schema=schema,
                    timeout_seconds=timeout,
                    done=results,
                    later=calls[i + 1 :],
                )
            result, accepted = await self._run_one(step, call)
            results.append(result)
            if accepted is not _NO_OUTPUT:
                # set_output ends the run: later calls in this response are ignored.
                return results, accepted
        return results, _NO_OUTPUT

    async def _run_one(self, step: int, call: ToolCall) -> tuple[ToolResult, Any]:
        self.state.tool_calls += 1
        await self.journal.tool_called(step, call, wait=False)  # stored while the tool runs
        started = self.clock()
        output = await self._dispatch(call)
        await self._sync(call.name)
        duration_ms = int((self.clock() - started) * 1000)
        summary = output.summary if output.summary is not None else text_of(output.content)
        await self.journal.tool_completed(
            step,
            call,
            is_error=output.is_error,
            output=summary,
            duration_ms=duration_ms,
            detail=output.detail,
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
            log.warning(
                "drive files written by a tool call were not saved yet", tool=tool, error=str(exc)
            )

    async def _dispatch(self, call: ToolCall) -> ToolOutput:
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolOutput.text(
                f"there is no tool named {call.name!r}; available: {', '.join(self.tools)}",
                is_error=True,
            )
        if call.malformed is not None:
            return ToolOutput.text(f"{call.name}: {call.malformed}", is_error=True)
        if problems := await validate_off_loop(tool.spec.input_schema, call.input):
            lines = "; ".join(f"{p.message} at {p.pointer or '/'}" for p in problems[:10])
            what = (
                "the output does not match the output_schema"
                if call.name == SET_OUTPUT
                else "invalid input"
            )
            return ToolOutput.text(
                f"{call.name}: {what}: {lines}", is_error=True, detail={"problems": len(problems)}
            )
        try:
            return await tool.run(call.input, self.context)
        except ToolError as exc:
            return ToolOutput.text(
                f"{call.name} failed: {exc.message}", is_error=True, detail=exc.detail
            )
        except SandboxError as exc:  # e.g. the warm parent died; the next call starts a new one
            return ToolOutput.text(f"{call.name} could not run: {exc}", is_error=True)


class _NoOutput:
    def __repr__(self) -> str:
        return "<no output>"


_NO_OUTPUT: Any = _NoOutput()
