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
    parse_tool_call,
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
            api_key=api_key or "unset",
            base_url=base_url,
            max_retries=0,
            timeout=timeout_seconds,
            http_client=anthropic.DefaultAioHttpClient(timeout=timeout_seconds),
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
            # Posted as plain JSON through the client (its headers, errors and SSE decoding),
            # with the events folded here: the SDK's typed walk of the parameters and its
            # message accumulator, which re-parses a tool call's JSON at every delta, cost
            # milliseconds a call and grow with the conversation.
            stream = await self.client.post(
                "/v1/messages",
                body={**params, "stream": True},
                cast_to=object,
                stream=True,
                stream_cls=anthropic.AsyncStream[object],
            )
            return await _fold(stream)
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from None
        except anthropic.APIConnectionError as exc:  # includes timeouts
            raise TransientProviderError(self.provider, f"{type(exc).__name__}: {exc}") from None

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


_USAGE = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


async def _fold(stream: Any) -> ModelResponse:
    """Fold the streamed events of one message into a response: text and tool-use blocks in
    order, each tool call's input parsed once its JSON is whole, the usage as last reported."""
    blocks: dict[int, dict[str, Any]] = {}
    usage: dict[str, int] = {}
    stop: str | None = None
    message_id: str | None = None
    async for event in stream:
        if not isinstance(event, dict):
            continue
        kind, index = event.get("type"), event.get("index")
        if kind == "content_block_delta" and isinstance(index, int) and index in blocks:
            block = blocks[index]
            delta = _dict(event.get("delta"))
            piece = delta.get("text" if block["type"] == "text" else "partial_json")
            if isinstance(piece, str):
                block["parts"].append(piece)
        elif kind == "content_block_start" and isinstance(index, int):
            started = _dict(event.get("content_block"))
            if started.get("type") in ("text", "tool_use"):
                first = started.get("text") if started["type"] == "text" else None
                blocks[index] = {**started, "parts": [first] if isinstance(first, str) else []}
        elif kind == "message_start":
            message = _dict(event.get("message"))
            message_id = _text(message, "id") or None
            _count(usage, message.get("usage"))
        elif kind == "message_delta":
            reason = _dict(event.get("delta")).get("stop_reason")
            stop = reason if isinstance(reason, str) else stop
            _count(usage, event.get("usage"))
    text: list[str] = []
    calls: list[ToolCall] = []
    for _, block in sorted(blocks.items()):
        if block["type"] == "text":
            text.append("".join(block["parts"]))
        elif block["parts"]:
            calls.append(
                parse_tool_call(_text(block, "id"), _text(block, "name"), "".join(block["parts"]))
            )
        else:  # the whole input came with the block's start
            given = block.get("input")
            calls.append(
                ToolCall(
                    _text(block, "id"),
                    _text(block, "name"),
                    given if isinstance(given, dict) else {},
                )
            )
    request_id = stream.response.headers.get("request-id") or message_id
    return ModelResponse(
        text="".join(text),
        tool_calls=calls,
        stop_reason=_STOP.get(stop or "", "other"),
        raw_stop_reason=stop,
        input_tokens=usage.get("input_tokens", 0)
        + usage.get("cache_read_input_tokens", 0)
        + usage.get("cache_creation_input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
        request_id=request_id,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(block: dict[str, Any], name: str) -> str:
    value = block.get(name)
    return value if isinstance(value, str) else ""


def _count(usage: dict[str, int], reported: Any) -> None:
    """Keep each usage figure ``reported`` gives (a later event's figures are cumulative)."""
    if isinstance(reported, dict):
        for name in _USAGE:
            if isinstance(value := reported.get(name), int):
                usage[name] = value


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
