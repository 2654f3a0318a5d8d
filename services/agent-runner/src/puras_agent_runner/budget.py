"""Holding a model call's maximum cost before it is made (see :mod:`puras_common.budgets`).

The most a call can cost is its input, bounded from the request, plus ``max_tokens`` of output.
Billing may grant less than that, down to the cost of ``min_output_tokens``: the call then asks
the model for only as many output tokens as the grant pays for, so a call never costs more than
was held (as far as the input bound holds, below). A hold that cannot be taken fails the job with
``insufficient_credits`` or ``spend_cap_reached``.

The input bound: every token of text covers at least one UTF-8 byte, so the request's bytes
(system prompt, tool schemas, messages) bound its text tokens; images and documents are not
counted by their bytes but by what providers charge for them at most, plus their bytes for a
document's text. What the provider reports is what is billed, and settles the hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from puras_common.budgets import BudgetClient, HoldRefused
from puras_pricing import Pricebook
from puras_pricing.models import Model

from puras_agent_runner.conversation import Document, Image, Text, ToolCall, ToolResult
from puras_agent_runner.providers import ModelRequest

IMAGE_TOKENS: Final = 2_000
"""The most an image costs in input tokens on the families we serve (they downscale larger ones)."""
DOCUMENT_PAGE_TOKENS: Final = 3_000
"""A PDF's page image and text; a document's pages are bounded here by its bytes / 1 KiB + 1."""
MESSAGE_TOKENS: Final = 8
"""Per message and per block: role markers and separators."""
HOLD_GRACE_SECONDS: Final = 300
"""How long past the job's end an unsettled hold stays (billing may lag behind the call)."""


def input_token_bound(request: ModelRequest) -> int:
    """At least as many input tokens as the request can be charged for (see the module)."""
    total = _text(request.system) + MESSAGE_TOKENS
    for tool in request.tools:
        total += _text(tool.name) + _text(tool.description) + _text(json.dumps(tool.input_schema))
        total += MESSAGE_TOKENS
    for message in request.messages:
        total += MESSAGE_TOKENS + sum(_block(b) for b in message.blocks)
    return total


def _text(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


def _block(block: object) -> int:
    if isinstance(block, Text):
        return _text(block.text) + MESSAGE_TOKENS
    if isinstance(block, Image):
        return IMAGE_TOKENS + MESSAGE_TOKENS
    if isinstance(block, Document):
        size = len(block.data or b"")
        return size + DOCUMENT_PAGE_TOKENS * (size // 1024 + 1) + MESSAGE_TOKENS
    if isinstance(block, ToolCall):
        return _text(block.name) + _text(json.dumps(block.input)) + _text(block.id) + MESSAGE_TOKENS
    if isinstance(block, ToolResult):
        return _text(block.call_id) + sum(_block(c) for c in block.content) + MESSAGE_TOKENS
    return MESSAGE_TOKENS


class NotBudgeted(Exception):
    """The call's cost could not be held: the loop fails the job with ``reason``."""

    def __init__(self, error: str, *, reason: str, detail: dict[str, object]) -> None:
        super().__init__(error)
        self.error, self.reason, self.detail = error, reason, detail


@dataclass
class CallBudget:
    """Holds each model call of one job against its workspace and key."""

    client: BudgetClient
    prices: Pricebook
    model: Model
    workspace_id: UUID
    job_id: UUID
    key_id: UUID | None
    daily_cap_micros: int | None
    seconds_left: Callable[[], float]
    min_output_tokens: int = 1024

    def cost(self, input_tokens: int, output_tokens: int) -> int:
        return self.prices.quote(
            self.model.slug, input_tokens=input_tokens, output_tokens=output_tokens
        ).billed_micros

    async def hold(self, request: ModelRequest) -> tuple[UUID, int]:
        """Hold the call's cost; the hold's id and the ``max_tokens`` it pays for."""
        inputs = input_token_bound(request)
        floor = min(self.min_output_tokens, request.max_tokens)
        try:
            hold_id, granted = await self.client.hold(
                workspace_id=self.workspace_id,
                job_id=self.job_id,
                key_id=self.key_id,
                daily_cap_micros=self.daily_cap_micros,
                min_micros=self.cost(inputs, floor),
                max_micros=self.cost(inputs, request.max_tokens),
                ttl_seconds=int(max(0.0, self.seconds_left())) + HOLD_GRACE_SECONDS,
                what=f"a call of {self.model.slug}",
                settle_wait=min(self.client.settle_wait, max(0.0, self.seconds_left())),
            )
        except HoldRefused as refused:
            r = refused.reply
            detail = {
                "code": refused.code,
                "model": self.model.slug,
                "balance_micros": r.balance_micros,
                "held_micros": r.held_micros,
                "spent_today_micros": r.spent_today_micros,
                "daily_cap_micros": self.daily_cap_micros,
            }
            raise NotBudgeted(
                str(refused),
                reason=refused.code,
                detail={k: v for k, v in detail.items() if v is not None},
            ) from None
        except TimeoutError as exc:
            raise NotBudgeted(
                f"the model call could not be budgeted: {exc}", reason="runtime", detail={}
            ) from None
        return hold_id, self.output_tokens_for(inputs, granted, request.max_tokens)

    def output_tokens_for(self, inputs: int, granted: int, most: int) -> int:
        """The most output tokens (up to ``most``) whose cost with ``inputs`` fits ``granted``."""
        lo, hi = 1, most
        if self.cost(inputs, hi) <= granted:
            return hi
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.cost(inputs, mid) <= granted:
                lo = mid
            else:
                hi = mid - 1
        return lo
