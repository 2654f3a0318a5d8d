"""One trace per job across the services: with ``PURAS_OTLP_ENDPOINT`` set, the gateway, the
scheduler, a runner and billing export spans of a job into one trace whose id is the job's id,
each consumer's span the child of the span that published the event it handled (the W3C
``traceparent`` NATS header)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from puras_testing import eventually
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import ECHO_PROJECT, Platform

from .otlp_receiver import OtlpReceiver, otlp_receiver

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

TRACED = ("gateway", "scheduler", "function-runner", "agent-runner", "billing")
PROJECT = {
    **ECHO_PROJECT,
    "skills/note/skill.yaml": (
        "entrypoint: SKILL.md\nmodel: claude/haiku-4-5\n"
        "output_schema: {type: object, properties: {answer: {type: string}}, required: [answer]}\n"
    ),
    "skills/note/SKILL.md": "Take a note. traced-note\n",
}


@contextlib.asynccontextmanager
async def traced(platform: Platform, receiver: OtlpReceiver) -> AsyncIterator[None]:
    """The services (and any replicas another test added) restarted exporting to ``receiver``,
    and restarted without it after."""
    names = [
        n for n in platform.supervisor.children if n in TRACED or n.rsplit("-", 1)[0] in TRACED
    ]
    for name in names:
        platform.supervisor.children[name].env["PURAS_OTLP_ENDPOINT"] = receiver.url
    await platform.restart(*names)
    try:
        yield
    finally:
        for name in names:
            platform.supervisor.children[name].env.pop("PURAS_OTLP_ENDPOINT", None)
        await platform.restart(*names)


async def test_one_trace_per_job_across_the_services(
    platform: Platform, model_provider: ModelStub
) -> None:
    tenant = await platform.tenant(f"traces-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    async with otlp_receiver() as receiver, traced(platform, receiver):
        echo = await tenant.run("echo", {"text": "traced"})
        model_provider.script(
            Reply(tool_calls=[Call("set_output", {"answer": "ok"})]), match="traced-note"
        )
        note = await tenant.run("note", {})
        assert echo["status"] == note["status"] == "succeeded"

        def services_of(job_id: str, want: set[str]) -> set[str] | None:
            seen = {s.service for s in receiver.trace(uuid.UUID(job_id).hex)}
            return seen if want <= seen else None

        function_services = {"puras-gateway", "puras-scheduler", "puras-function-runner"}
        await eventually(
            lambda: services_of(echo["id"], function_services),
            timeout=20,
            what="the function job's spans from gateway, scheduler and runner",
        )
        agent_services = {*function_services - {"puras-function-runner"}, "puras-agent-runner"}
        await eventually(
            lambda: services_of(note["id"], agent_services | {"puras-billing"}),
            timeout=20,
            what="the agent job's spans, billing's included",
        )

    spans = receiver.trace(uuid.UUID(echo["id"]).hex)
    assert all(s.attributes["puras.job_id"] == echo["id"] for s in spans)
    by_id = {s.span_id: s for s in spans}
    work = next(s for s in spans if s.name == "work run.function")
    parent = by_id[work.parent_span_id]  # the runner's span is the child of the dispatch
    assert parent.service == "puras-scheduler" and parent.name == "publish run.function"
    applied = [s for s in spans if s.name == "gateway-jobs job.succeeded"]
    assert applied and by_id[applied[0].parent_span_id].service == "puras-scheduler"
    started = [s for s in spans if s.name == "gateway-jobs job.started"]
    assert started and by_id[started[0].parent_span_id].name == "work run.function"
    assert (
        len({s.trace_id for s in receiver.spans if s.attributes.get("puras.job_id") == echo["id"]})
        == 1
    )
