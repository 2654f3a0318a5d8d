"""One contract for every provider adapter, run through the real SDKs against the wire-format
stub: text, tool calls, usage, images, errors and retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from puras_agent_runner.conversation import Image, Message, Text, ToolCall, ToolResult, ToolSpec
from puras_agent_runner.providers import (
    ModelRequest,
    ModelResponse,
    ProviderError,
    ProviderGaveUp,
    Providers,
    RetryPolicy,
    TransientProviderError,
    call_with_retries,
)
from puras_agent_runner.providers.anthropic import _fold as anthropic_fold
from puras_agent_runner.providers.openai_compat import _collect as openai_collect
from puras_agent_runner.settings import AgentRunnerSettings
from puras_pricing.models import catalogue, local_models
from puras_testing.models import Call, Fail, ModelStub, Reply, Turn, model_stub

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAMILIES = {
    "claude/sonnet-4-7": "anthropic",
    "gpt/4o": "openai",
    "gemini/2.5-flash": "gemini",
    "local/llama": "openai",
}
TOOL = ToolSpec(
    "lookup",
    "Look something up.",
    {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[ModelStub]:
    async with model_stub() as running:
        yield running


@pytest.fixture(scope="module")
async def providers(stub: ModelStub) -> AsyncIterator[Providers]:
    env = {k.removeprefix("PURAS_AGENT_RUNNER_").lower(): v for k, v in stub.env().items()}
    settings = AgentRunnerSettings(**env)
    models = catalogue()
    merged = type(models)(
        default=models.default,
        models={
            **models.models,
            **local_models(
                f'{{"llama": {{"base_url": "{stub.openai_url}", "upstream": "llama3"}}}}'
            ),
        },
    )
    made = Providers(settings, merged)
    yield made
    await made.aclose()


def request(marker: str, upstream: str, messages: list[Message] | None = None) -> ModelRequest:
    return ModelRequest(
        upstream_model=upstream,
        system=f"You are a test. {marker}",
        messages=messages or [Message("user", [Text("hello")])],
        tools=[TOOL],
        max_tokens=256,
    )


@pytest.mark.parametrize("slug", FAMILIES)
async def test_text_tool_calls_and_usage_come_back_through_the_sdk(
    stub: ModelStub, providers: Providers, slug: str
) -> None:
    resolved = providers.resolve(slug)
    marker = f"contract-{slug}"
    script = stub.script(
        Reply(
            text="Let me look.",
            tool_calls=[Call("lookup", {"q": "puras"})],
            input_tokens=321,
            output_tokens=45,
        ),
        match=marker,
    )
    response = await resolved.chat.complete(request(marker, resolved.model.upstream))
    assert response.text == "Let me look."
    assert [(c.name, c.input) for c in response.tool_calls] == [("lookup", {"q": "puras"})]
    assert response.stop_reason == "tool_use"
    assert (response.input_tokens, response.output_tokens) == (321, 45)
    seen = stub.requests_for(script)[0]
    assert seen.wire == FAMILIES[slug] or (slug.startswith("gemini") and seen.wire == "gemini")
    assert seen.body["model"] == resolved.model.upstream
    assert seen.body["stream"] is True
    assert seen.tool_names == ["lookup"]
    assert "contract-" in seen.system


@pytest.mark.parametrize("slug", FAMILIES)
async def test_a_tool_result_with_an_image_reaches_the_model(
    stub: ModelStub, providers: Providers, slug: str
) -> None:
    resolved = providers.resolve(slug)
    marker = f"images-{slug}"
    script = stub.script(Reply(text="A red square."), match=marker)
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 16
    messages = [
        Message("user", [Text("look"), Image("image/png", data=png)]),
        Message("assistant", [ToolCall("c1", "lookup", {"q": "x"})]),
        Message(
            "user",
            [ToolResult("c1", "lookup", (Text("=== a.png ==="), Image("image/png", data=png)))],
        ),
    ]
    response = await resolved.chat.complete(request(marker, resolved.model.upstream, messages))
    assert response.text == "A red square." and response.stop_reason == "end_turn"
    body = stub.requests_for(script)[0].text()
    assert body.count("iVBORw0KGgo") == 2  # the attachment and the tool's image, base64


@pytest.mark.parametrize("slug", FAMILIES)
async def test_a_refusal_carries_the_providers_message(
    stub: ModelStub, providers: Providers, slug: str
) -> None:
    resolved = providers.resolve(slug)
    marker = f"refuse-{slug}"
    stub.script(Fail(400, "prompt is too long: 300000 tokens > 200000 maximum"), match=marker)
    with pytest.raises(ProviderError) as caught:
        await resolved.chat.complete(request(marker, resolved.model.upstream))
    assert not isinstance(caught.value, TransientProviderError)
    assert "prompt is too long: 300000 tokens > 200000 maximum" in str(caught.value)
    assert caught.value.status == 400


async def retried(
    stub: ModelStub, providers: Providers, slug: str, marker: str, *turns: Turn
) -> tuple[ModelResponse, list[TransientProviderError]]:
    """The response to one call whose model answers ``turns`` in order, retried up to three
    times, and the failures each retry followed."""
    resolved = providers.resolve(slug)
    script = stub.script(*turns, match=marker)
    failures: list[TransientProviderError] = []

    async def on_retry(exc: TransientProviderError, attempt: int, delay: float) -> None:
        failures.append(exc)

    response = await call_with_retries(
        lambda: resolved.chat.complete(request(marker, resolved.model.upstream)),
        RetryPolicy(attempts=3, base_seconds=0.001, cap_seconds=0.01),
        on_retry=on_retry,
    )
    assert len(stub.requests_for(script)) == len(turns)
    return response, failures


@pytest.mark.parametrize("slug", FAMILIES)
@pytest.mark.parametrize("status", [429, 500, 529])
async def test_transient_failures_are_retried_then_succeed(
    stub: ModelStub, providers: Providers, slug: str, status: int
) -> None:
    response, failures = await retried(
        stub,
        providers,
        slug,
        f"retry-{status}-{slug}",
        Fail(status, "slow down", retry_after=0),
        Fail(status, "slow down"),
        Reply(text="made it"),
    )
    assert response.text == "made it"
    assert [f.status for f in failures] == [status, status]


async def test_retries_are_bounded(stub: ModelStub, providers: Providers) -> None:
    resolved = providers.resolve("claude/haiku-4-5")
    marker = "bounded-retries"
    script = stub.script(*[Fail(529, "Overloaded")] * 4, match=marker)
    with pytest.raises(ProviderGaveUp) as caught:
        await call_with_retries(
            lambda: resolved.chat.complete(request(marker, resolved.model.upstream)),
            RetryPolicy(attempts=3, base_seconds=0.001, cap_seconds=0.01),
        )
    assert "Overloaded (gave up after 3 attempts)" in str(caught.value)
    assert len(stub.requests_for(script)) == 3 and stub.remaining(script) == 1


@pytest.mark.parametrize("slug", ["claude/haiku-4-5", "gpt/4o-mini", "gemini/2.0-flash"])
async def test_malformed_tool_arguments_are_reported_not_raised(
    stub: ModelStub, providers: Providers, slug: str
) -> None:
    resolved = providers.resolve(slug)
    marker = f"malformed-{slug}"
    stub.script(Reply(tool_calls=[Call("lookup", '{"q": ')]), match=marker)
    response = await resolved.chat.complete(request(marker, resolved.model.upstream))
    assert (
        response.tool_calls[0].malformed is not None
        and "not valid JSON" in response.tool_calls[0].malformed
    )


@pytest.mark.parametrize("slug", FAMILIES)
async def test_several_tool_calls_and_cached_input_are_folded_from_the_stream(
    stub: ModelStub, providers: Providers, slug: str
) -> None:
    resolved = providers.resolve(slug)
    marker = f"fold-{slug}"
    calls = [
        Call("lookup", {"q": "a", "n": [1, 2]}),
        Call("lookup", {}),
        Call("lookup", {"q": "ü"}),
    ]
    stub.script(
        Reply(text="Three.", tool_calls=calls, input_tokens=7, cached_input_tokens=1000),
        match=marker,
    )
    response = await resolved.chat.complete(request(marker, resolved.model.upstream))
    assert response.text == "Three."
    assert [c.input for c in response.tool_calls] == [{"q": "a", "n": [1, 2]}, {}, {"q": "ü"}]
    assert len({c.id for c in response.tool_calls}) == 3
    assert all(c.malformed is None for c in response.tool_calls)
    assert response.input_tokens == 1007  # what was read from the cache is billed as input
    assert response.request_id


@pytest.mark.parametrize("slug", FAMILIES)
async def test_an_error_in_the_middle_of_the_stream_is_retried(
    stub: ModelStub, providers: Providers, slug: str
) -> None:
    response, failures = await retried(
        stub,
        providers,
        slug,
        f"broken-{slug}",
        Reply(text="lost", broken="stream interrupted: overloaded"),
        Reply(text="whole"),
    )
    assert response.text == "whole"
    assert len(failures) == 1 and "stream interrupted: overloaded" in str(failures[0])


async def test_the_api_keys_and_upstream_ids_come_from_settings_and_catalogue(
    stub: ModelStub, providers: Providers
) -> None:
    assert providers.resolve(None).model.slug == catalogue().default
    assert providers.resolve("gemini/2.5-pro").model.upstream == "gemini-2.5-pro"
    assert providers.resolve("local/llama").model.input_usd_per_mtok == 0


class _Stream:
    """Decoded events as the SDK's stream yields them, with the response they came on."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.response = httpx.Response(200, headers={"request-id": "req_odd"})

    async def __aiter__(self) -> AsyncIterator[Any]:
        for event in self.events:
            yield event


async def test_odd_shapes_in_a_stream_are_skipped_not_raised() -> None:
    """What a compatible server gets wrong (a list where an object goes, a number for text,
    an index that is not one) is passed over: the call still answers with what was whole."""
    claude = await anthropic_fold(
        _Stream(
            [
                "ping",
                {"type": "message_start", "message": {"id": 7, "usage": {"input_tokens": "9"}}},
                {"type": "content_block_start", "index": "0", "content_block": {"type": "text"}},
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
                {"type": "content_block_delta", "index": 0, "delta": {"text": 5}},
                {"type": "content_block_delta", "index": 0, "delta": {"text": "ok"}},
                {"type": "content_block_delta", "index": 3, "delta": {"text": "lost"}},
                {"type": "content_block_start", "index": 1, "content_block": []},
                {"type": "message_delta", "delta": ["end_turn"], "usage": {"output_tokens": 4}},
            ]
        )
    )
    assert (claude.text, claude.tool_calls, claude.input_tokens, claude.output_tokens) == (
        "ok",
        [],
        0,
        4,
    )
    assert claude.request_id == "req_odd" and claude.stop_reason == "other"
    gpt = await openai_collect(
        _Stream(
            [
                {"id": 1, "choices": {"delta": {}}},
                {"choices": [3, {"delta": "x"}, {"delta": {"content": ["no"]}}]},
                {"choices": [{"delta": {"content": "fine", "tool_calls": [None, {"index": "a"}]}}]},
                {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": "f"}]}}]},
                {"usage": {"prompt_tokens": "1", "completion_tokens": 2}},
            ]
        )
    )
    assert gpt.text == "fine" and (gpt.input_tokens, gpt.output_tokens) == (0, 2)
    assert [(c.name, c.input) for c in gpt.tool_calls] == [("", {})]
