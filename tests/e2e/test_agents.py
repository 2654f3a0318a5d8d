"""Agentic skills end to end over HTTP: the quickstart's ``hello`` and the example project's
``caption`` on every model family, through gateway → scheduler → agent runner → gateway, with
the model served by the wire-format stub."""

from __future__ import annotations

import asyncio
import base64
import uuid

import asyncpg
import pytest
from nats.js import JetStreamContext
from puras_common.events import JobCancelRequested
from puras_common.events.jobs import CancelRequestedPayload
from puras_testing import eventually
from puras_testing.models import Call, ModelStub, Reply, Wait
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAMILIES = {
    None: "anthropic",
    "claude/haiku-4-5": "anthropic",
    "gpt/5-mini": "openai",
    "gemini/2.5-flash": "gemini",
}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def quickstart(marker: str, model: str | None) -> dict[str, str]:
    model_line = f"model: {model}\n" if model else ""
    return {
        "skills/hello/skill.yaml": (
            "description: Answer the user's question briefly.\n"
            "entrypoint: SKILL.md\n"
            + model_line
            + "input_schema: {type: object, properties: {prompt: {type: string}}, required: [prompt]}\n"
            "output_schema: {type: object, properties: {answer: {type: string}}, required: [answer]}\n"
        ),
        "skills/hello/SKILL.md": f'You are a helpful assistant. Answer the user\'s question briefly. When you are done, call the `set_output` tool with {{ "answer": "" }}. {marker}\n',
        "skills/caption/skill.yaml": f"""
            description: Write a short caption for a product photo.
            entrypoint: SKILL.md
            model: {model or "claude/sonnet-4-7"}
            input_schema:
              type: object
              properties:
                prompt: {{type: string}}
                attachments: {{type: array, items: {{type: object}}, minItems: 1, maxItems: 1}}
              required: [attachments]
            output_schema:
              type: object
              properties: {{caption: {{type: string}}}}
              required: [caption]
            """,
        "skills/caption/SKILL.md": f"You write short, punchy captions for product photos. Reply with exactly one caption. {marker}-caption\n",
    }


async def tenant_with(platform: Platform, files: dict[str, str]) -> Tenant:
    tenant = await platform.tenant(f"agents-{uuid.uuid4().hex[:8]}")
    response = await tenant.push(files)
    assert response.status_code == 201, response.text
    return tenant


async def public_events(
    admin_db: asyncpg.Connection, job_id: str, until: str
) -> list[asyncpg.Record]:
    async def probe() -> list[asyncpg.Record] | None:
        rows = await admin_db.fetch(
            "SELECT type, payload FROM gateway.job_events WHERE job_id = $1 ORDER BY seq",
            uuid.UUID(job_id),
        )
        return rows if any(r["type"] == until for r in rows) else None

    return await eventually(probe, timeout=20, what=f"{until} in job_events")


@pytest.mark.parametrize("model", FAMILIES)
async def test_quickstart_hello_runs_on_every_family(
    platform: Platform, model_provider: ModelStub, admin_db: asyncpg.Connection, model: str | None
) -> None:
    marker = f"hello-{uuid.uuid4().hex}"
    tenant = await tenant_with(platform, quickstart(marker, model))
    script = model_provider.script(
        Reply(
            text="Let me answer.",
            tool_calls=[Call("set_output", {"answer": "Puras is a backend for agents."})],
            input_tokens=812,
            output_tokens=31,
        ),
        match=marker,
    )
    job = await tenant.run("hello", {"prompt": "What is Puras?"})
    assert job["status"] == "succeeded", job
    assert job["result"] == {"answer": "Puras is a backend for agents."}
    request = model_provider.requests_for(script)[0]
    assert request.wire == FAMILIES[model]
    assert request.messages[0]["content"][0]["text"] == "What is Puras?"
    events = await public_events(admin_db, job["id"], "succeeded")
    types = [r["type"] for r in events]
    assert types[:1] == ["queued"] and types[-1] == "succeeded"
    assert [t for t in types if t in ("agent_start", "step", "tool_call", "tool_result")] == [
        "agent_start",
        "step",
        "tool_call",
        "tool_result",
    ]
    agent_start = next(r for r in events if r["type"] == "agent_start")
    assert '"model": "%s"' % (model or "claude/sonnet-4-6") in agent_start["payload"]


@pytest.mark.parametrize("model", ["claude/sonnet-4-7", "gpt/4o", "gemini/2.5-pro"])
async def test_example_caption_sees_the_photo(
    platform: Platform, model_provider: ModelStub, model: str
) -> None:
    marker = f"caption-{uuid.uuid4().hex}"
    tenant = await tenant_with(platform, quickstart(marker, model))
    script = model_provider.script(
        Reply(tool_calls=[Call("set_output", {"caption": "Bold red, built to move."})]),
        match=f"{marker}-caption",
    )
    photo = base64.b64encode(PNG).decode()
    job = await tenant.run(
        "caption",
        {
            "prompt": "Tone: playful. Write the caption.",
            "attachments": [{"base64": photo, "media_type": "image/png"}],
        },
    )
    assert job["status"] == "succeeded", job
    assert job["result"] == {"caption": "Bold red, built to move."}
    assert photo in model_provider.requests_for(script)[0].text()


async def test_caption_with_a_pdf_on_gpt_fails_up_front(
    platform: Platform, model_provider: ModelStub
) -> None:
    marker = f"caption-{uuid.uuid4().hex}"
    tenant = await tenant_with(platform, quickstart(marker, "gpt/4o"))
    pdf = base64.b64encode(b"%PDF-1.4\n").decode()
    job = await tenant.run(
        "caption", {"attachments": [{"base64": pdf, "media_type": "application/pdf"}]}
    )
    assert job["status"] == "failed"
    assert job["error"] == (
        "inputs.attachments[0] (application/pdf) is a PDF and gpt/4o cannot read PDFs (only the Claude family can); "
        "convert its pages to images"
    )


async def test_a_running_agent_job_is_cancelled_between_steps(
    platform: Platform, model_provider: ModelStub, js: JetStreamContext
) -> None:
    marker = f"cancel-{uuid.uuid4().hex}"
    tenant = await tenant_with(platform, quickstart(marker, None))
    release = asyncio.Event()
    script = model_provider.script(
        Wait(release, Reply(tool_calls=[Call("bash", {"command": "true"})])),
        Reply(tool_calls=[Call("set_output", {"answer": "too late"})]),
        match=marker,
    )
    submitted = await tenant.http.post(
        "/v1/jobs", json={"skill": "hello", "inputs": {"prompt": "wait"}}
    )
    job_id = submitted.json()["id"]
    await eventually(
        lambda: model_provider.requests_for(script), timeout=20, what="the first model call"
    )
    # What the gateway publishes for POST /v1/jobs/{id}/cancel on a running job.
    request = JobCancelRequested.new(
        CancelRequestedPayload(),
        producer="gateway",
        workspace_id=uuid.UUID(tenant.id),
        job_id=uuid.UUID(job_id),
    )
    await js.publish(request.subject, request.to_json(), headers={"Nats-Msg-Id": str(request.id)})
    release.set()

    async def finished() -> dict | None:
        body = (await tenant.http.get(f"/v1/jobs/{job_id}")).json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    job = await eventually(finished, timeout=20, what="the job to end")
    assert job["status"] == "cancelled"
    assert len(model_provider.requests_for(script)) == 1
