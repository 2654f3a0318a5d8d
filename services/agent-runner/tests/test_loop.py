"""The loop's semantics on the real runner: prompts and first messages, set_output, the end
without it, max steps, timeouts, cancellation between steps, provider failures, and the events
and usage each step and tool call leaves on the bus."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from agent_harness import Harness
from puras_common.events import JobCancelRequested
from puras_common.events.jobs import CancelRequestedPayload
from puras_pricing.models import catalogue
from puras_testing import Infra
from puras_testing.models import Call, Fail, Reply, Wait

pytestmark = pytest.mark.asyncio(loop_scope="session")

HELLO = {
    "skills/hello/skill.yaml": """
        description: Answer the user's question briefly.
        entrypoint: SKILL.md
        input_schema:
          type: object
          properties: {prompt: {type: string}}
          required: [prompt]
        output_schema:
          type: object
          properties: {answer: {type: string}}
          required: [answer]
        """,
}


def hello(marker: str, **extra: str) -> dict[str, str]:
    return {
        **HELLO,
        "skills/hello/SKILL.md": f"You are a helpful assistant. Answer briefly, then call set_output. {marker}\n",
        **extra,
    }


async def test_hello_answers_through_set_output(harness: Harness, marker: str) -> None:
    deployment = harness.push(hello(marker))
    script = harness.models.script(
        Reply(
            text="Calling set_output.",
            tool_calls=[Call("set_output", {"answer": "Puras runs skills."})],
        ),
        match=marker,
    )
    outcome = await harness.run(deployment, "hello", {"prompt": "What is Puras?", "tone": "dry"})
    assert outcome.status == "succeeded", outcome.terminal
    assert outcome.result == {"answer": "Puras runs skills."}
    request = harness.models.requests_for(script)[0]
    assert request.wire == "anthropic"
    assert request.system.startswith("You are a helpful assistant.")
    first = request.messages[0]["content"][0]["text"]
    assert first.startswith("What is Puras?") and json.loads(first.split("Inputs:\n", 1)[1]) == {
        "tone": "dry"
    }
    assert request.tool("set_output")["input_schema"] == {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }
    assert request.tool_names == [
        "bash",
        "media",
        "web_search",
        "image_search",
        "web_fetch",
        "file_read",
        "download_url",
        "request_input",
        "set_output",
    ]
    types = [e.type for e in outcome.events]
    assert types == [
        "job.started",
        "agent.started",
        "job.usage",
        "step.completed",
        "tool.called",
        "tool.completed",
    ]
    # The attempt's compute, free at the default rates, rides on its terminal event.
    assert outcome.compute is not None and outcome.compute.kind == "compute"
    started = outcome.of("agent.started")[0]
    assert (started.model, started.provider, started.upstream_model) == (
        catalogue().default,
        "anthropic",
        "claude-sonnet-4-6",
    )
    step = outcome.of("step.completed")[0]
    assert (step.step, step.stop_reason, step.text, step.tool_calls) == (
        1,
        "tool_use",
        "Calling set_output.",
        1,
    )


async def test_without_an_output_schema_the_result_is_the_final_text(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(
        {
            "skills/chat/skill.yaml": "entrypoint: SKILL.md\nmodel: gpt/4o-mini\n",
            "skills/chat/SKILL.md": f"Chat. {marker}",
        }
    )
    harness.models.script(
        Reply(tool_calls=[Call("bash", {"command": "echo hi"})]),
        Reply(text="All done: hi"),
        match=marker,
    )
    outcome = await harness.run(deployment, "chat", {"prompt": "say hi"})
    assert outcome.status == "succeeded" and outcome.result == {"text": "All done: hi"}
    assert "set_output" not in outcome.of("agent.started")[0].tools


async def test_an_invalid_set_output_goes_back_to_the_model_which_may_retry(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(hello(marker))
    script = harness.models.script(
        Reply(tool_calls=[Call("set_output", {"answer": 42})]),
        Reply(tool_calls=[Call("set_output", {"reply": "x"})]),
        Reply(tool_calls=[Call("set_output", {"answer": "forty-two"})]),
        match=marker,
    )
    outcome = await harness.run(deployment, "hello", {"prompt": "?"})
    assert outcome.status == "succeeded" and outcome.result == {"answer": "forty-two"}
    requests = harness.models.requests_for(script)
    first_error = requests[1].last_tool_results()[0]
    assert (
        first_error["is_error"] and "42 is not of type 'string' at /answer" in first_error["text"]
    )
    second_error = requests[2].last_tool_results()[0]
    assert "'answer' is a required property" in second_error["text"]
    completed = outcome.of("tool.completed")
    assert [c.is_error for c in completed] == [True, True, False]


async def test_set_output_ends_the_run_and_later_calls_in_the_response_are_ignored(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(hello(marker))
    drive = harness.folder()
    script = harness.models.script(
        Reply(
            tool_calls=[
                Call("set_output", {"answer": "first"}),
                Call("bash", {"command": f"touch drive/{marker}"}),
                Call("set_output", {"answer": "second"}),
            ]
        ),
        Reply(text="never asked"),
        match=marker,
    )
    outcome = await harness.run(deployment, "hello", {"prompt": "?"})
    assert outcome.result == {"answer": "first"}
    assert [c.name for c in outcome.of("tool.called")] == ["set_output"]
    assert not (drive / marker).exists()
    assert len(harness.models.requests_for(script)) == 1 and harness.models.remaining(script) == 1


async def test_ending_without_set_output_fails_the_job(harness: Harness, marker: str) -> None:
    deployment = harness.push(hello(marker))
    harness.models.script(Reply(text="The answer is 4."), match=marker)
    outcome = await harness.run(deployment, "hello", {"prompt": "2+2?"})
    assert outcome.status == "failed"
    assert outcome.error == "agent finished without calling set_output"
    assert outcome.terminal.payload.reason == "invalid_result"


async def test_the_loop_stops_at_max_steps(harness: Harness, marker: str) -> None:
    deployment = harness.push(hello(marker))
    loop_turn = Reply(tool_calls=[Call("bash", {"command": "true"})])
    script = harness.models.script(*[loop_turn] * 4, match=marker)
    original = harness.runner.settings
    harness.runner.settings = original.model_copy(update={"max_steps": 3})
    try:
        outcome = await harness.run(deployment, "hello", {"prompt": "loop"})
    finally:
        harness.runner.settings = original
    assert outcome.status == "failed"
    assert outcome.error == "the agent did not finish within 3 steps (model calls)"
    assert len(harness.models.requests_for(script)) == 3


async def test_usage_is_recorded_per_step_and_sums_to_the_steps(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(hello(marker))
    harness.models.script(
        Reply(tool_calls=[Call("bash", {"command": "true"})], input_tokens=1000, output_tokens=50),
        Reply(tool_calls=[Call("bash", {"command": "true"})], input_tokens=1400, output_tokens=70),
        Reply(
            tool_calls=[Call("set_output", {"answer": "ok"})], input_tokens=1800, output_tokens=90
        ),
        match=marker,
    )
    outcome = await harness.run(deployment, "hello", {"prompt": "?"})
    assert outcome.status == "succeeded"
    steps = outcome.of("step.completed")
    usage = [u.payload for u in outcome.usage]
    assert [(u.kind, u.provider, u.model, u.attempt) for u in usage] == [
        ("llm", "anthropic", catalogue().default, 1)
    ] * 3
    # Then the attempt's own compute: its bash steps' CPU time and its wall time, free at the
    # default rates, so not sent to billing: its terminal event carries the row.
    compute = outcome.compute
    assert (compute.kind, compute.model, compute.attempt) == ("compute", "puras/compute", 1)
    assert not compute.ledger and 0 <= compute.cpu_ms <= compute.wall_ms
    assert [(u.input_tokens, u.output_tokens) for u in usage] == [
        (s.input_tokens, s.output_tokens) for s in steps
    ]
    assert sum(u.input_tokens for u in usage) == 4200 and sum(u.output_tokens for u in usage) == 210
    assert len({u.id for u in outcome.usage}) == 3


async def test_a_tool_runs_while_the_server_stores_its_call_and_every_event_keeps_its_order(
    harness: Harness, infra: Infra, marker: str
) -> None:
    if infra.nats is None or infra.nats.process is None:
        pytest.skip("freezes the session's own nats-server; PURAS_TEST_NATS_URL names another")
    deployment = harness.push(hello(marker))
    release = asyncio.Event()
    script = harness.models.script(
        Wait(release, Reply(tool_calls=[Call("bash", {"command": f"echo ran > drive/{marker}"})])),
        Reply(tool_calls=[Call("set_output", {"answer": "done"})]),
        match=marker,
    )
    command = harness.command(deployment, "hello", {"prompt": "?"})
    running = asyncio.create_task(harness.run_command(command))
    await _until(lambda: harness.models.requests_for(script))
    # The server stores nothing while it is stopped: the step's usage, its step.completed and
    # the tool.called go out with the call, and the command runs meanwhile.
    nats = infra.nats.process.pid
    os.kill(nats, signal.SIGSTOP)
    try:
        release.set()
        await _until(lambda: (harness.folder() / marker).exists())
    finally:
        os.kill(nats, signal.SIGCONT)
    outcome = await running
    assert outcome.status == "succeeded"
    # In the job's history each step's usage (its job.usage copy) precedes the step, its call
    # and the call's end; the attempt's compute goes with its end. Billing has the usage of
    # both calls.
    assert [e.type for e in outcome.events] == [
        "job.started",
        "agent.started",
        *["job.usage", "step.completed", "tool.called", "tool.completed"] * 2,
    ]
    assert outcome.compute is not None
    assert [u.type for u in outcome.usage] == ["usage.recorded"] * 2


async def test_a_cancel_request_stops_the_loop_between_steps(harness: Harness, marker: str) -> None:
    deployment = harness.push(hello(marker))
    release = asyncio.Event()
    script = harness.models.script(
        Wait(
            release,
            Reply(tool_calls=[Call("bash", {"command": "echo in-flight > drive/" + marker})]),
        ),
        Reply(tool_calls=[Call("set_output", {"answer": "too late"})]),
        match=marker,
    )
    command = harness.command(deployment, "hello", {"prompt": "?"})
    running = asyncio.create_task(harness.run_command(command))
    await _until(lambda: harness.models.requests_for(script))
    request = JobCancelRequested.new(
        CancelRequestedPayload(),
        producer="gateway",
        workspace_id=command.workspace_id,
        job_id=command.job_id,
    )
    await harness.nc.jetstream().publish(
        request.subject, request.to_json(), headers={"Nats-Msg-Id": str(request.id)}
    )
    await _until(
        lambda: harness.runner.cancellations._running.get(command.job_id, asyncio.Event()).is_set()
    )
    release.set()
    outcome = await running
    assert outcome.status == "cancelled"
    assert outcome.terminal.payload.reason == "cancelled by request after 1 steps"
    # The tool call in flight completed; no further model call was made.
    assert [c.name for c in outcome.of("tool.completed")] == ["bash"]
    assert (harness.folder() / marker).read_text() == "in-flight\n"
    assert len(harness.models.requests_for(script)) == 1


async def test_the_jobs_sandbox_starts_while_the_model_thinks_about_the_first_step(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(hello(marker))
    release = asyncio.Event()
    script = harness.models.script(
        Wait(release, Reply(tool_calls=[Call("bash", {"command": "echo ran"})])),
        Reply(tool_calls=[Call("set_output", {"answer": "done"})]),
        match=marker,
    )
    command = harness.command(deployment, "hello", {"prompt": "?"})
    running = asyncio.create_task(harness.run_command(command))
    await _until(lambda: harness.models.requests_for(script))
    # The model holds its first answer, so no command has run, and the job's sandbox is up.
    await _until(lambda: _sandbox_running(str(command.job_id)))
    release.set()
    outcome = await running
    assert outcome.status == "succeeded"
    assert [c.name for c in outcome.of("tool.completed")] == ["bash", "set_output"]
    assert not _sandbox_running(str(command.job_id))  # stopped with the job


def _sandbox_running(job_id: str) -> bool:
    """Whether a process of the job's own fork server is alive on this host."""
    for proc in Path("/proc").iterdir():
        try:
            if f"job-{job_id}".encode() in (proc / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


async def test_a_cancel_requested_before_the_job_started_stops_it_before_any_model_call(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(hello(marker))
    script = harness.models.script(Reply(text="never"), match=marker)
    command = harness.command(deployment, "hello", {"prompt": "?"})
    # Asked before this runner started the job (between its claim and its start).
    request = JobCancelRequested.new(
        CancelRequestedPayload(),
        producer="gateway",
        workspace_id=command.workspace_id,
        job_id=command.job_id,
    )
    await harness.nc.jetstream().publish(
        request.subject, request.to_json(), headers={"Nats-Msg-Id": str(request.id)}
    )
    await _until(lambda: command.job_id in harness.runner.cancellations._recent)
    outcome = await harness.run_command(command)
    assert outcome.status == "cancelled" and not harness.models.requests_for(script)


async def test_the_skill_timeout_fails_a_job_whose_model_never_answers(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(hello(marker))
    never = asyncio.Event()
    harness.models.script(Wait(never, Reply(text="late")), match=marker)
    outcome = await harness.run(deployment, "hello", {"prompt": "?"}, timeout=1)
    never.set()
    assert outcome.status == "failed" and outcome.terminal.payload.reason == "timeout"
    assert outcome.error.startswith("job exceeded its timeout of 1 s")


async def test_a_provider_refusal_fails_the_job_with_the_providers_message(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(hello(marker))
    harness.models.script(
        Fail(400, "messages: text content blocks must be non-empty"), match=marker
    )
    outcome = await harness.run(deployment, "hello", {"prompt": "?"})
    assert outcome.status == "failed"
    assert (
        outcome.error
        == "the model provider failed: anthropic answered 400: messages: text content blocks must be non-empty"
    )


async def test_transient_provider_errors_are_retried_within_a_step(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(hello(marker))
    script = harness.models.script(
        Fail(429, "rate limited"),
        Fail(503, "unavailable"),
        Reply(tool_calls=[Call("set_output", {"answer": "ok"})]),
        match=marker,
    )
    outcome = await harness.run(deployment, "hello", {"prompt": "?"})
    assert outcome.status == "succeeded" and len(harness.models.requests_for(script)) == 3
    assert len(outcome.of("step.completed")) == 1
    assert [u.payload.kind for u in outcome.usage] == ["llm"]
    assert [u.kind for u in outcome.of("job.usage")] == ["llm"]
    assert outcome.compute.kind == "compute"


async def test_an_unknown_tool_and_malformed_arguments_go_back_to_the_model(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(
        {
            "skills/chat/skill.yaml": "entrypoint: SKILL.md\nmodel: gemini/2.5-flash\n",
            "skills/chat/SKILL.md": f"Chat. {marker}",
        }
    )
    script = harness.models.script(
        Reply(tool_calls=[Call("teleport", {"to": "mars"}), Call("bash", '{"command": ')]),
        Reply(text="ok"),
        match=marker,
    )
    outcome = await harness.run(deployment, "chat", {"prompt": "go"})
    assert outcome.status == "succeeded"
    results = harness.models.requests_for(script)[1].last_tool_results()
    assert results[0]["text"].startswith("there is no tool named 'teleport'; available: bash, ")
    assert "bash: the arguments are not valid JSON" in results[1]["text"]


async def _until(probe, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    from puras_testing import eventually

    await eventually(probe, timeout=timeout)
