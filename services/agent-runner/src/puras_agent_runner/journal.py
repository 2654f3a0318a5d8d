"""What an agent job tells the bus while it runs: ``agent.started``, a ``step.completed`` and a
``usage.recorded`` per model call (with its ``job.usage`` copy for the job's history, from
:mod:`puras_pricing.metering`), a ``tool.called`` and ``tool.completed`` per tool call.

A job's events are stored in the order they were made: each publish goes out only once the one
before it is acknowledged. Two of them do not hold the loop up:

* a step that called tools keeps its events until its first ``tool.called``, and all of them
  go out in one publish; the tool runs while the server stores them (a question for the user
  waits until they are stored);
* ``tool.completed`` is written to the server and the loop goes on to its next model call.

Such a publish is acknowledged before the next one goes out, so the call's usage is stored
before the loop makes its next model call, or by :meth:`Journal.settle`, which the runner calls
before the job's terminal event, whatever ended it. A publish the server did not acknowledge is
sent again then (the event ids make that safe).

Every text is masked and cut before it leaves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from nats.js import JetStreamContext
from puras_common.bus import publish, send
from puras_common.envelope import Event, Payload
from puras_common.events import (
    AgentStarted,
    RunAgent,
    StepCompleted,
    ToolCalled,
    ToolCompleted,
    UsageRecorded,
)
from puras_common.events.agent import (
    MAX_EVENT_TEXT,
    AgentStartedPayload,
    StepCompletedPayload,
    ToolCalledPayload,
    ToolCompletedPayload,
)
from puras_common.events.usage import UsageRecordedPayload
from puras_common.secret_delivery import SecretMask
from puras_pricing import Pricebook, PricingError, pricebook, usage_events
from puras_pricing.models import Model

from puras_agent_runner.conversation import ToolCall
from puras_agent_runner.masking import clip, clip_value
from puras_agent_runner.providers import ModelResponse

PRODUCER = "agent-runner"
MAX_INPUT_STRING = 4096
"""Longest string of a tool's input shown in its tool.called event."""


class Journal:
    """Publishes one agent job's events."""

    def __init__(
        self,
        js: JetStreamContext,
        command: RunAgent,
        masker: SecretMask,
        *,
        prices: Pricebook | None = None,
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.js = js
        self.command = command
        self.masker = masker
        self.prices = prices or pricebook()
        self.attempt = command.payload.attempt
        self.published = 0
        self._held: list[Event] = []
        """Made, and sent with the next publish."""
        self._unconfirmed: Callable[[], Awaitable[None]] | None = after
        """Waits for the acknowledgements of the last publish, which the loop did not wait for
        (at first, ``after``: what the runner sent before the journal's first event)."""

    def event(self, cls: type[Event], payload: Payload) -> Event:
        c = self.command
        return cls.new(
            payload, producer=PRODUCER, workspace_id=c.workspace_id, job_id=c.job_id, caused_by=c
        )

    async def emit(self, *events: Event) -> None:
        """Publish ``events`` (after any held ones) and wait until the server has stored them."""
        await self._publish(events, wait=True)

    async def settle(self) -> None:
        """Publish what is held and wait until everything published so far is stored."""
        if self._held:
            await self._publish((), wait=True)
        else:
            await self._confirm()

    async def _confirm(self) -> None:
        """Wait for the acknowledgements of the last publish the loop did not wait for."""
        if self._unconfirmed is not None:
            confirmed, self._unconfirmed = self._unconfirmed, None
            await confirmed()

    async def _publish(self, events: tuple[Event, ...], *, wait: bool) -> None:
        batch = [*self._held, *events]
        self._held = []
        await self._confirm()  # stored first, so the order holds through retries
        if wait:
            await publish(self.js, batch)
        else:
            self._unconfirmed = await send(self.js, batch)
        self.published += len(batch)

    async def agent_started(self, model: Model, tools: list[str], max_steps: int) -> None:
        payload = AgentStartedPayload(
            attempt=self.attempt,
            model=model.slug,
            provider=model.provider,
            upstream_model=model.upstream,
            tools=tuple(tools),
            max_steps=max_steps,
        )
        # Stored while the first model call is made: the step's events confirm it first.
        await self._publish((self.event(AgentStarted, payload),), wait=False)

    async def step(
        self,
        step: int,
        model: Model,
        response: ModelResponse,
        duration_ms: int,
        *,
        hold_id: UUID | None = None,
    ) -> None:
        """The step's event and the usage it incurred, in one publish: now if the model called
        no tool, else with the first ``tool.called``."""
        p = self.command.payload
        usage = UsageRecordedPayload(
            job_id=self.command.job_id,
            key_id=p.key_id,
            attempt=self.attempt,
            kind="llm",
            provider=model.provider,
            model=model.slug,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            request_id=response.request_id,
            hold_id=hold_id,
        )
        try:
            metered, _ = usage_events(
                self.prices,
                usage,
                workspace_id=self.command.workspace_id,
                producer=PRODUCER,
                caused_by=self.command,
            )
        except PricingError:
            # A model the registry cannot price still had its call billed by billing's own rules
            # (which park it visibly); the job's history then lacks the copy.
            metered = [
                UsageRecorded.new(
                    usage,
                    producer=PRODUCER,
                    workspace_id=self.command.workspace_id,
                    job_id=self.command.job_id,
                    caused_by=self.command,
                )
            ]
        completed = StepCompletedPayload(
            attempt=self.attempt,
            step=step,
            model=model.slug,
            stop_reason=response.raw_stop_reason or response.stop_reason,
            text=clip(self.masker.text(response.text), MAX_EVENT_TEXT),
            tool_calls=len(response.tool_calls),
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            duration_ms=duration_ms,
        )
        events = [*metered, self.event(StepCompleted, completed)]
        if response.tool_calls:
            self._held.extend(events)
        else:
            await self.emit(*events)

    async def tool_called(self, step: int, call: ToolCall, *, wait: bool = True) -> None:
        """``tool.called``, with what the step held; ``wait=False`` goes on without waiting
        for the server to store them (the tool then runs meanwhile)."""
        shown: Any = clip_value(self.masker.value(call.input), MAX_INPUT_STRING)
        payload = ToolCalledPayload(
            attempt=self.attempt, step=step, call_id=call.id, name=call.name, input=shown
        )
        await self._publish((self.event(ToolCalled, payload),), wait=wait)

    async def tool_completed(
        self,
        step: int,
        call: ToolCall,
        *,
        is_error: bool,
        output: str,
        duration_ms: int,
        detail: dict[str, Any] | None,
    ) -> None:
        payload = ToolCompletedPayload(
            attempt=self.attempt,
            step=step,
            call_id=call.id,
            name=call.name,
            is_error=is_error,
            output=clip(self.masker.text(output), MAX_EVENT_TEXT),
            duration_ms=duration_ms,
            detail=clip_value(self.masker.value(detail), MAX_INPUT_STRING) if detail else None,
        )
        await self._publish((self.event(ToolCompleted, payload),), wait=False)
