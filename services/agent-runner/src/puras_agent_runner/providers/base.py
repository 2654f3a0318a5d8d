"""One interface for every model provider, and the retry policy they share.

An adapter turns a :class:`ModelRequest` into one upstream call through the provider's official
SDK and its answer into a :class:`ModelResponse`. Adapters raise :class:`TransientProviderError`
for what a later attempt can get past (429, 5xx, timeouts, dropped connections) and
:class:`ProviderError` for everything else, with the provider's own message; :func:`call_with_retries`
retries only the former, with backoff and a bound.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from puras_common.logging import get_logger

from puras_agent_runner.conversation import Message, ToolCall, ToolSpec

log = get_logger("puras_agent_runner.providers")

StopReason = Literal["end_turn", "tool_use", "max_tokens", "refusal", "other"]


@dataclass(frozen=True)
class ModelRequest:
    """One step's call: the whole conversation so far and the tools on offer."""

    upstream_model: str
    system: str
    messages: list[Message]
    tools: list[ToolSpec]
    max_tokens: int


@dataclass(frozen=True)
class ModelResponse:
    """The model's answer to one step."""

    text: str
    tool_calls: list[ToolCall]
    stop_reason: StopReason
    input_tokens: int
    output_tokens: int
    raw_stop_reason: str | None = None
    request_id: str | None = None


class ProviderError(Exception):
    """The provider refused or failed the call; retrying would not help."""

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        where = f"{provider} answered {status}" if status else provider
        super().__init__(f"{where}: {message}")
        self.provider = provider
        self.status = status
        self.message = message


class TransientProviderError(ProviderError):
    """A failure a later attempt can get past: rate limits, overload, 5xx, timeouts."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after


class ProviderGaveUp(ProviderError):
    """Transient failures went on past the retry bound."""

    def __init__(self, last: TransientProviderError, attempts: int) -> None:
        super().__init__(
            last.provider, f"{last.message} (gave up after {attempts} attempts)", status=last.status
        )
        self.attempts = attempts


class ChatModel(Protocol):
    """A provider adapter."""

    provider: str

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One model call; raises ProviderError or TransientProviderError."""
        ...

    async def aclose(self) -> None:
        """Close the adapter's connections."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient provider failures are retried."""

    attempts: int = 5
    """Calls in all, the first included."""
    base_seconds: float = 1.0
    cap_seconds: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Backoff before retry ``attempt`` (0-based); a server's Retry-After wins, within the cap."""
        backoff = min(self.cap_seconds, self.base_seconds * 2.0**attempt)
        if retry_after is not None:
            return min(self.cap_seconds, max(backoff, retry_after))
        return backoff


async def call_with_retries(
    call: Callable[[], Awaitable[ModelResponse]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[TransientProviderError, int, float], Awaitable[None]] | None = None,
) -> ModelResponse:
    """``call()``, retried on TransientProviderError up to ``policy.attempts`` calls in all."""
    for attempt in range(policy.attempts):
        try:
            return await call()
        except TransientProviderError as exc:
            if attempt + 1 >= policy.attempts:
                raise ProviderGaveUp(exc, policy.attempts) from exc
            delay = policy.delay(attempt, exc.retry_after)
            log.warning(
                "provider call failed; retrying",
                provider=exc.provider,
                error=str(exc),
                retry_in=delay,
            )
            if on_retry is not None:
                await on_retry(exc, attempt + 1, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def retry_after_seconds(headers: object) -> float | None:
    """The ``Retry-After`` header in seconds, when a response has a numeric one."""
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def parse_tool_call(call_id: str, name: str, arguments: str) -> ToolCall:
    """A tool call from its streamed JSON arguments (none is ``{}``); arguments that are not a
    JSON object make a call marked malformed, whose error the model is told, never raised."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError as exc:
        return ToolCall(
            call_id,
            name,
            {},
            malformed=f"the arguments are not valid JSON ({exc}): {arguments[:200]}",
        )
    if not isinstance(parsed, dict):
        return ToolCall(
            call_id,
            name,
            {},
            malformed=f"the arguments must be a JSON object, not {type(parsed).__name__}",
        )
    return ToolCall(call_id, name, parsed)
