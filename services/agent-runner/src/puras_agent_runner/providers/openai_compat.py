"""GPT, Gemini and operator-hosted models through the OpenAI Chat Completions API (the official
``openai`` SDK), streamed. Gemini is served on its OpenAI-compatible endpoint, local models on
whatever base URL the operator configured."""

from __future__ import annotations

import json
from typing import Any

import openai

from puras_agent_runner.conversation import (
    Document,
    Image,
    Message,
    Text,
    ToolCall,
    ToolResult,
    text_of,
)
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
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


class OpenAICompatibleModel:
    """Chat Completions adapter; the SDK's own retries are off (the loop's policy applies)."""

    def __init__(
        self,
        *,
        provider: str,
        api_key: str,
        base_url: str | None,
        timeout_seconds: float,
        token_parameter: str = "max_completion_tokens",
    ) -> None:
        self.provider = provider
        self.token_parameter = token_parameter
        """``max_completion_tokens`` for OpenAI; ``max_tokens`` for endpoints that predate it."""
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "unset",
            base_url=base_url,
            max_retries=0,
            timeout=timeout_seconds,
            http_client=openai.DefaultAioHttpClient(timeout=timeout_seconds),
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        params: dict[str, Any] = {
            "model": request.upstream_model,
            "messages": to_openai_messages(request.system, request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            self.token_parameter: request.max_tokens,
        }
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                }
                for t in request.tools
            ]
        try:
            # The SDK's own method first walks the parameters against its typed schema, which
            # costs milliseconds per call and grows with the conversation; these parameters are
            # plain JSON already, so they go to the same endpoint through the client's post,
            # with its headers, errors and SSE decoding, and the chunks are folded as JSON
            # rather than built into typed objects one by one.
            stream = await self.client.post(
                "/chat/completions",
                body=params,
                cast_to=object,
                options={"security": {"bearer_auth": True}},
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            return await _collect(stream)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APIConnectionError as exc:  # includes timeouts
            raise TransientProviderError(self.provider, f"{type(exc).__name__}: {exc}") from None
        except openai.APIError as exc:  # an error event in the middle of the stream
            raise TransientProviderError(self.provider, exc.message) from None

    def _status_error(self, exc: openai.APIStatusError) -> ProviderError:
        message = _message_of(exc)
        status = exc.status_code
        if status in (408, 409, 429) or status >= 500:
            return TransientProviderError(
                self.provider,
                message,
                status=status,
                retry_after=retry_after_seconds(exc.response.headers),
            )
        return ProviderError(self.provider, message, status=status)

    async def aclose(self) -> None:
        await self.client.close()


def _message_of(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(message := inner.get("message"), str):
            return message
    if (
        isinstance(body, list) and body and isinstance(body[0], dict)
    ):  # Gemini wraps errors in a list
        inner = body[0].get("error", {})
        if isinstance(inner, dict) and isinstance(message := inner.get("message"), str):
            return message
    return exc.message


async def _collect(stream: Any) -> ModelResponse:
    """Fold a streamed completion (its chunks as decoded JSON) into one response."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish: str | None = None
    usage: dict[str, Any] = {}
    request_id: str | None = None
    async for chunk in stream:
        if not isinstance(chunk, dict):
            continue
        if isinstance(given := chunk.get("id"), str):
            request_id = request_id or given
        if isinstance(reported := chunk.get("usage"), dict):
            usage = reported
        for choice in _dicts(chunk.get("choices")):
            delta = choice.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            if isinstance(content := delta.get("content"), str):
                text.append(content)
            for position, tc in enumerate(_dicts(delta.get("tool_calls"))):
                index = tc.get("index")
                slot = calls.setdefault(
                    index if isinstance(index, int) else position,
                    {"id": None, "name": "", "arguments": []},
                )
                if isinstance(tc.get("id"), str) and tc["id"]:
                    slot["id"] = tc["id"]
                function = tc.get("function")
                function = function if isinstance(function, dict) else {}
                if isinstance(name := function.get("name"), str):
                    slot["name"] += name
                if isinstance(arguments := function.get("arguments"), str):
                    slot["arguments"].append(arguments)
            if isinstance(reason := choice.get("finish_reason"), str):
                finish = reason
    tool_calls = [
        parse_tool_call(slot["id"] or f"call_{i}", slot["name"], "".join(slot["arguments"]))
        for i, slot in sorted(calls.items())
    ]
    stop = _STOP.get(finish or "", "other")
    if tool_calls and stop == "end_turn":  # some compatible servers say "stop" after tool calls
        stop = "tool_use"
    return ModelResponse(
        text="".join(text),
        tool_calls=tool_calls,
        stop_reason=stop,
        raw_stop_reason=finish,
        input_tokens=_tokens(usage, "prompt_tokens"),
        output_tokens=_tokens(usage, "completion_tokens"),
        request_id=request_id,
    )


def _tokens(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name)
    return value if isinstance(value, int) and value >= 0 else 0


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list the stream gave, skipping anything else it holds."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def to_openai_messages(system: str, messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation as Chat Completions messages.

    Tool results become ``tool`` messages, which carry text only; images a tool returned (as
    ``file_read`` does) follow in a user message that says which call they belong to.
    """
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for message in messages:
        if message.role == "assistant":
            out.append(_assistant(message))
            continue
        parts: list[dict[str, Any]] = []
        followups: list[dict[str, Any]] = []
        for block in message.blocks:
            if isinstance(block, ToolResult):
                out.append(
                    {"role": "tool", "tool_call_id": block.call_id, "content": _tool_text(block)}
                )
                images = [c for c in block.content if isinstance(c, Image)]
                if images:
                    followups.append(
                        {
                            "type": "text",
                            "text": f"The images returned by {block.name} (call {block.call_id}):",
                        }
                    )
                    followups.extend(_part(c) for c in images)
            elif isinstance(block, Text | Image | Document):
                parts.append(_part(block))
        if parts or followups:
            out.append({"role": "user", "content": parts + followups})
    return out


def _assistant(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": "assistant", "content": message.text() or None}
    calls = [b for b in message.blocks if isinstance(b, ToolCall)]
    if calls:
        entry["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.input)},
            }
            for c in calls
        ]
    return entry


def _tool_text(result: ToolResult) -> str:
    text = text_of([c for c in result.content if isinstance(c, Text)]) if result.content else ""
    if any(isinstance(c, Image) for c in result.content):
        text = (text + "\n" if text else "") + "(images follow in the next message)"
    return text or "(no output)"


def _part(block: Text | Image | Document) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, Image):
        return {"type": "image_url", "image_url": {"url": block.data_url()}}
    # Documents never reach a model without PDF support: attachments and file_read refuse them.
    return {"type": "text", "text": f"[a {block.media_type} document this model cannot read]"}
