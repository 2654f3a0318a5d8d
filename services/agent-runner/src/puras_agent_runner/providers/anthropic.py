"""The Claude family through the Anthropic Messages API (the official ``anthropic`` SDK), streamed."""

from __future__ import annotations

from typing import Any

import anthropic

from puras_agent_runner.conversation import Document, Image, Message, Text, ToolCall, ToolResult
from puras_agent_runner.providers.base import (
    ModelRequest,
    ModelResponse,
    ProviderError,
    StopReason,
    TransientProviderError,
    retry_after_seconds,
)

_STOP: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "refusal": "refusal",
}
_TRANSIENT_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})


class AnthropicModel:
    """Anthropic Messages adapter; the SDK's own retries are off (the loop's policy applies)."""

    provider = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None, timeout_seconds: float) -> None:
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key or "unset", base_url=base_url, max_retries=0, timeout=timeout_seconds
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        params: dict[str, Any] = {
            "model": request.upstream_model,
            "max_tokens": request.max_tokens,
            "system": request.system,
            "messages": [_message(m) for m in request.messages],
        }
        if request.tools:
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in request.tools
            ]
        try:
            async with self.client.messages.stream(**params) as stream:
                final = await stream.get_final_message()
                request_id = stream.request_id
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from None
        except anthropic.APIConnectionError as exc:  # includes timeouts
            raise TransientProviderError(self.provider, f"{type(exc).__name__}: {exc}") from None
        return _response(final, request_id)

    async def aclose(self) -> None:
        await self.client.close()


def _status_error(exc: anthropic.APIStatusError) -> ProviderError:
    message = exc.api_message or str(exc)
    status = exc.status_code
    kind = getattr(exc, "type", None)
    if status in (408, 409, 429) or status >= 500 or kind in _TRANSIENT_TYPES:
        return TransientProviderError(
            "anthropic",
            message,
            status=status,
            retry_after=retry_after_seconds(exc.response.headers),
        )
    return ProviderError("anthropic", message, status=status)


def _response(final: Any, request_id: str | None) -> ModelResponse:
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in final.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            calls.append(
                ToolCall(
                    id=block.id,
                    name=block.name,
                    input=block.input if isinstance(block.input, dict) else {},
                )
            )
    raw = final.stop_reason
    return ModelResponse(
        text="".join(text),
        tool_calls=calls,
        stop_reason=_STOP.get(raw or "", "other"),
        raw_stop_reason=raw,
        input_tokens=int(final.usage.input_tokens or 0)
        + int(getattr(final.usage, "cache_read_input_tokens", 0) or 0)
        + int(getattr(final.usage, "cache_creation_input_tokens", 0) or 0),
        output_tokens=int(final.usage.output_tokens or 0),
        request_id=request_id or getattr(final, "id", None),
    )


def _message(message: Message) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    for block in message.blocks:
        if isinstance(block, ToolCall):
            blocks.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
        elif isinstance(block, ToolResult):
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": block.call_id,
                    "content": [_content(c) for c in block.content]
                    or [{"type": "text", "text": "(no output)"}],
                    "is_error": block.is_error,
                }
            )
        else:
            blocks.append(_content(block))
    return {"role": message.role, "content": blocks}


def _content(block: Text | Image | Document) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text or " "}
    kind = "image" if isinstance(block, Image) else "document"
    if block.url is not None:
        return {"type": kind, "source": {"type": "url", "url": block.url}}
    return {
        "type": kind,
        "source": {"type": "base64", "media_type": block.media_type, "data": block.base64()},
    }
