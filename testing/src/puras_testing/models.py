"""A local model server that speaks the providers' wire formats, scripted per test.

One server answers the Anthropic Messages API (``POST /v1/messages``, streamed as SSE or not),
the OpenAI Chat Completions API (``POST /v1/chat/completions``) and Gemini's OpenAI-compatible
endpoint (``POST /v1beta/openai/chat/completions``), so the real SDKs run their own code paths
against it: tool use, streaming, usage and error bodies included.

A test scripts the turns the "model" will take::

    stub.script(Reply(tool_calls=[Call("set_output", {"answer": "hi"})]), match="unique-marker")

Each request takes the next turn of the first script whose ``match`` appears in the request's
system prompt or messages (or of the unmatched script), so tests sharing one server do not take
each other's turns. Every request is recorded, parsed, in :attr:`ModelStub.requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from puras_testing.stubs import serve_app

Wire = Literal["anthropic", "openai", "gemini"]


@dataclass(frozen=True)
class Call:
    """A tool call the scripted model makes."""

    name: str
    input: dict[str, Any] | str
    """An object, or raw text to send as the arguments (to script malformed JSON)."""
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """One model response."""

    text: str = ""
    tool_calls: tuple[Call, ...] | list[Call] = ()
    stop: str | None = None
    """Raw stop/finish reason; by default tool use when there are calls, else end of turn."""
    input_tokens: int = 100
    output_tokens: int = 20
    cached_input_tokens: int = 0
    """Input read from the provider's prompt cache: Anthropic reports them apart from
    ``input_tokens``, OpenAI within ``prompt_tokens``."""
    broken: str | None = None
    """Streamed only: the stream breaks off after its first event with the provider's error
    event carrying this message (an overloaded Anthropic, a server error on OpenAI's wire)."""


@dataclass(frozen=True)
class Fail:
    """An error response: ``status`` with the provider's error body."""

    status: int
    message: str = "scripted failure"
    retry_after: float | None = None


@dataclass(frozen=True)
class Wait:
    """Hold the request until ``released`` is set, then answer ``then``."""

    released: asyncio.Event
    then: Reply | Fail


Turn = Reply | Fail | Wait


@dataclass
class StubRequest:
    """One request the stub received."""

    wire: Wire
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    script: str | None = None

    @property
    def system(self) -> str:
        if self.wire == "anthropic":
            system = self.body.get("system", "")
            return system if isinstance(system, str) else "".join(b.get("text", "") for b in system)
        return "".join(
            m["content"]
            for m in self.body["messages"]
            if m["role"] == "system" and isinstance(m["content"], str)
        )

    @property
    def tool_names(self) -> list[str]:
        tools = self.body.get("tools") or []
        if self.wire == "anthropic":
            return [t["name"] for t in tools]
        return [t["function"]["name"] for t in tools]

    def tool(self, name: str) -> dict[str, Any]:
        for t in self.body.get("tools") or []:
            if self.wire == "anthropic" and t["name"] == name:
                return {"description": t["description"], "input_schema": t["input_schema"]}
            if self.wire != "anthropic" and t["function"]["name"] == name:
                return {
                    "description": t["function"]["description"],
                    "input_schema": t["function"]["parameters"],
                }
        raise KeyError(name)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [m for m in self.body["messages"] if m["role"] != "system"]

    def last_tool_results(self) -> list[dict[str, Any]]:
        """The tool results of the last turn as ``{call_id, text, is_error}``, in either wire format."""
        if self.wire == "anthropic":
            last = self.body["messages"][-1]
            out = []
            for block in last["content"] if isinstance(last["content"], list) else []:
                if block.get("type") == "tool_result":
                    content = block.get("content")
                    text = (
                        content
                        if isinstance(content, str)
                        else "\n".join(
                            c.get("text", "") for c in content or [] if c.get("type") == "text"
                        )
                    )
                    out.append(
                        {
                            "call_id": block["tool_use_id"],
                            "text": text,
                            "is_error": bool(block.get("is_error")),
                            "content": content,
                        }
                    )
            return out
        out = []
        for m in reversed(self.body["messages"]):
            if m["role"] == "assistant":
                break
            if m["role"] == "tool":
                out.append(
                    {
                        "call_id": m["tool_call_id"],
                        "text": m["content"],
                        "is_error": None,
                        "content": m["content"],
                    }
                )
        return list(reversed(out))

    def text(self) -> str:
        """Everything in the request as one string, for matching scripts."""
        return json.dumps(self.body)


@dataclass
class _Script:
    match: str | None
    turns: list[Turn]
    name: str


@dataclass
class ModelStub:
    """The scripted model server; use :func:`model_stub` to run one."""

    base_url: str = ""
    requests: list[StubRequest] = field(default_factory=list)
    latency_seconds: float = 0.0
    """Added before every answer (to measure the loop's own overhead against)."""
    fallback: Callable[[StubRequest], Turn] | None = None
    """Answers requests no script matches; by default a plain "ok" end of turn."""
    on_served: Callable[[float], None] | None = None
    """Called with the provider's share of each call: from the request's arrival at the app to
    its last byte sent (``latency_seconds`` included)."""
    _scripts: list[_Script] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # URLs the SDKs take as base_url
    @property
    def anthropic_url(self) -> str:
        return self.base_url

    @property
    def openai_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def gemini_url(self) -> str:
        return f"{self.base_url}/v1beta/openai/"

    def env(self) -> dict[str, str]:
        """Agent runner settings pointing every hosted family at this stub."""
        return {
            "PURAS_AGENT_RUNNER_ANTHROPIC_BASE_URL": self.anthropic_url,
            "PURAS_AGENT_RUNNER_ANTHROPIC_API_KEY": "stub-anthropic-key",
            "PURAS_AGENT_RUNNER_OPENAI_BASE_URL": self.openai_url,
            "PURAS_AGENT_RUNNER_OPENAI_API_KEY": "stub-openai-key",
            "PURAS_AGENT_RUNNER_GEMINI_BASE_URL": self.gemini_url,
            "PURAS_AGENT_RUNNER_GEMINI_API_KEY": "stub-gemini-key",
            "PURAS_AGENT_RUNNER_PROVIDER_BACKOFF_SECONDS": "0.01",
            "PURAS_AGENT_RUNNER_PROVIDER_BACKOFF_CAP_SECONDS": "0.05",
        }

    def script(self, *turns: Turn, match: str | None = None) -> str:
        """Queue ``turns`` for requests containing ``match`` (any request when None)."""
        name = f"script-{next(self._ids)}"
        self._scripts.append(_Script(match, list(turns), name))
        return name

    def requests_for(self, script: str) -> list[StubRequest]:
        return [r for r in self.requests if r.script == script]

    def remaining(self, script: str) -> int:
        return sum(len(s.turns) for s in self._scripts if s.name == script)

    def _take(self, request: StubRequest) -> Turn:
        text = request.text()
        for script in self._scripts:
            if script.turns and (script.match is None or script.match in text):
                request.script = script.name
                return script.turns.pop(0)
        if self.fallback is not None:
            return self.fallback(request)
        return Reply(text="ok")

    # -- HTTP
    async def _handle(self, request: Request, wire: Wire) -> Response:
        body = await request.json()
        seen = StubRequest(wire, request.url.path, dict(request.headers), body)
        self.requests.append(seen)
        turn = self._take(seen)
        while isinstance(turn, Wait):
            await turn.released.wait()
            turn = turn.then
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        if isinstance(turn, Fail):
            return _error(wire, turn)
        stream = bool(body.get("stream"))
        model = str(body.get("model", ""))
        if wire == "anthropic":
            return (
                _anthropic_stream(turn, model, next(self._ids))
                if stream
                else JSONResponse(_anthropic_message(turn, model, next(self._ids)))
            )
        return (
            _openai_stream(turn, model, next(self._ids))
            if stream
            else JSONResponse(_openai_completion(turn, model, next(self._ids)))
        )

    def app(self) -> ASGIApp:
        async def anthropic(request: Request) -> Response:
            return await self._handle(request, "anthropic")

        async def openai(request: Request) -> Response:
            return await self._handle(request, "openai")

        async def gemini(request: Request) -> Response:
            return await self._handle(request, "gemini")

        routes = Starlette(
            routes=[
                Route("/v1/messages", anthropic, methods=["POST"]),
                Route("/v1/chat/completions", openai, methods=["POST"]),
                Route("/v1beta/openai/chat/completions", gemini, methods=["POST"]),
            ]
        )

        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            started = time.perf_counter()
            try:
                await routes(scope, receive, send)
            finally:
                if self.on_served is not None:
                    self.on_served(time.perf_counter() - started)

        return timed


@contextlib.asynccontextmanager
async def model_stub() -> AsyncIterator[ModelStub]:
    """Run a :class:`ModelStub` on loopback for the duration of the block."""
    stub = ModelStub()
    async with serve_app(stub.app()) as url:
        stub.base_url = url
        yield stub


# -- Anthropic Messages wire format


def _stop(turn: Reply, *, anthropic: bool) -> str:
    if turn.stop is not None:
        return turn.stop
    if turn.tool_calls:
        return "tool_use" if anthropic else "tool_calls"
    return "end_turn" if anthropic else "stop"


def _arguments(call: Call) -> str:
    return call.input if isinstance(call.input, str) else json.dumps(call.input)


def _anthropic_blocks(turn: Reply, n: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.text:
        blocks.append({"type": "text", "text": turn.text})
    for i, call in enumerate(turn.tool_calls):
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id or f"toolu_{n}_{i}",
                "name": call.name,
                "input": call.input,
            }
        )
    return blocks


def _anthropic_message(turn: Reply, model: str, n: int) -> dict[str, Any]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _anthropic_blocks(turn, n),
        "stop_reason": _stop(turn, anthropic=True),
        "stop_sequence": None,
        "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens},
    }


def _sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _anthropic_stream(turn: Reply, model: str, n: int) -> StreamingResponse:
    def frames() -> list[bytes]:
        start = _anthropic_message(turn, model, n) | {"content": [], "stop_reason": None}
        start["usage"] = {
            "input_tokens": turn.input_tokens,
            "cache_read_input_tokens": turn.cached_input_tokens,
            "output_tokens": 1,
        }
        out = [_sse("message_start", {"type": "message_start", "message": start})]
        if turn.broken is not None:
            error = {"type": "overloaded_error", "message": turn.broken}
            return [*out, _sse("error", {"type": "error", "error": error})]
        index = 0
        if turn.text:
            out.append(
                _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            half = max(1, len(turn.text) // 2)
            for piece in (turn.text[:half], turn.text[half:]):
                if piece:
                    out.append(
                        _sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "text_delta", "text": piece},
                            },
                        )
                    )
            out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
        for i, call in enumerate(turn.tool_calls):
            block = {
                "type": "tool_use",
                "id": call.id or f"toolu_{n}_{i}",
                "name": call.name,
                "input": {},
            }
            out.append(
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                )
            )
            raw = _arguments(call)
            half = len(raw) // 2
            for piece in (raw[:half], raw[half:]):
                out.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                )
            out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
        out.append(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _stop(turn, anthropic=True), "stop_sequence": None},
                    "usage": {"output_tokens": turn.output_tokens},
                },
            )
        )
        out.append(_sse("message_stop", {"type": "message_stop"}))
        return out

    return _event_stream(frames(), {"request-id": f"req_{n}"})


# -- OpenAI Chat Completions wire format


def _openai_completion(turn: Reply, model: str, n: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id or f"call_{n}_{i}",
                "type": "function",
                "function": {"name": c.name, "arguments": _arguments(c)},
            }
            for i, c in enumerate(turn.tool_calls)
        ]
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _stop(turn, anthropic=False)}
        ],
        "usage": {
            "prompt_tokens": turn.input_tokens,
            "completion_tokens": turn.output_tokens,
            "total_tokens": turn.input_tokens + turn.output_tokens,
        },
    }


def _openai_stream(turn: Reply, model: str, n: int) -> StreamingResponse:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(
            None,
            {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            },
        )

    def frames() -> list[bytes]:
        out = [chunk({"role": "assistant", "content": ""})]
        if turn.broken is not None:
            return [*out, _sse(None, {"error": {"message": turn.broken, "type": "server_error"}})]
        if turn.text:
            half = max(1, len(turn.text) // 2)
            out += [
                chunk({"content": piece}) for piece in (turn.text[:half], turn.text[half:]) if piece
            ]
        for i, call in enumerate(turn.tool_calls):
            raw = _arguments(call)
            out.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call.id or f"call_{n}_{i}",
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            half = len(raw) // 2
            out += [
                chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                for piece in (raw[:half], raw[half:])
                if piece
            ]
        out.append(chunk({}, _stop(turn, anthropic=False)))
        out.append(
            _sse(
                None,
                {
                    "id": f"chatcmpl-{n}",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": turn.input_tokens + turn.cached_input_tokens,
                        "completion_tokens": turn.output_tokens,
                        "total_tokens": turn.input_tokens
                        + turn.cached_input_tokens
                        + turn.output_tokens,
                        "prompt_tokens_details": {"cached_tokens": turn.cached_input_tokens},
                    },
                },
            )
        )
        out.append(_sse(None, "[DONE]"))
        return out

    return _event_stream(frames(), {"x-request-id": f"req_{n}"})


def _event_stream(frames: list[bytes], headers: dict[str, str]) -> StreamingResponse:
    """The frames as one SSE response, written in one piece: the SDK still parses event by
    event, and the stub adds no per-write latency of its own to what the loop is measured on."""

    async def body() -> AsyncIterator[bytes]:
        yield b"".join(frames)

    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


# -- errors


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error(wire: Wire, fail: Fail) -> JSONResponse:
    headers = {"retry-after": str(fail.retry_after)} if fail.retry_after is not None else {}
    if wire == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(fail.status, "api_error")
        return JSONResponse(
            {"type": "error", "error": {"type": kind, "message": fail.message}},
            status_code=fail.status,
            headers=headers,
        )
    error = {
        "message": fail.message,
        "type": "invalid_request_error" if fail.status < 500 else "server_error",
        "code": None,
    }
    if wire == "gemini":  # Gemini's compatible endpoint wraps its errors in a list
        return JSONResponse(
            [{"error": {"code": fail.status, "message": fail.message, "status": "ERROR"}}],
            status_code=fail.status,
            headers=headers,
        )
    return JSONResponse({"error": error}, status_code=fail.status, headers=headers)
