"""What an operator watches: every service serves Prometheus metrics, liveness and readiness on
its ops listener, and a job moving through the platform shows up in them under the documented
names and labels."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from puras_common.access import SERVICES
from puras_testing import eventually
from puras_testing.metrics import scrape, value
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import ECHO_PROJECT, Platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

AGENT_PROJECT = {
    **ECHO_PROJECT,
    "skills/scribe/skill.yaml": (
        "entrypoint: SKILL.md\nmodel: claude/haiku-4-5\n"
        "output_schema: {type: object, properties: {answer: {type: string}}, required: [answer]}\n"
    ),
    "skills/scribe/SKILL.md": "Write it down. metrics-scribe\n",
    "skills/nap/skill.yaml": "entrypoint: main.py:run\n",
    "skills/nap/main.py": "import time\n\ndef run(inputs):\n    time.sleep(1.5)\n    return {}\n",
}


async def test_every_service_answers_liveness_readiness_and_metrics(platform: Platform) -> None:
    async with httpx.AsyncClient() as http:
        for service in SERVICES:
            url = platform.config.ops_url(service)
            assert (await http.get(f"{url}/livez")).status_code == 200, service
            ready = await http.get(f"{url}/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ok", service
            assert (await http.get(f"{url}/nothing")).status_code == 404
            samples = await scrape(platform, service)
            assert value(samples, "puras_service_ready", service=service) == 1


async def test_a_job_shows_up_in_the_metrics(platform: Platform, model_provider: ModelStub) -> None:
    tenant = await platform.tenant(f"metrics-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(AGENT_PROJECT)).status_code == 201
    assert (await tenant.run("echo", {"text": "hi"}))["status"] == "succeeded"
    model_provider.script(
        Reply(tool_calls=[Call("set_output", {"answer": "noted"})]), match="metrics-scribe"
    )
    assert (await tenant.run("scribe", {}))["status"] == "succeeded"
    async with tenant.http.stream(
        "POST", "/v1/jobs?stream=true", json={"skill": "nap", "inputs": {}}
    ) as stream:
        gateway = await scrape(platform, "gateway")
        assert value(gateway, "puras_sse_streams_open") >= 1
        async for _ in stream.aiter_lines():
            pass

    gateway = await scrape(platform, "gateway")
    assert (
        value(gateway, "puras_http_requests_total", route="/v1/jobs", method="POST", status="200")
        >= 2
    )
    assert value(gateway, "puras_http_request_seconds_count", route="/v1/jobs/{job_id}") >= 0
    assert value(gateway, "puras_outbox_published_total", service="gateway") >= 3
    assert value(gateway, "puras_events_applied_total", consumer="gateway-jobs") > 0

    scheduler = await scrape(platform, "scheduler")
    assert value(scheduler, "puras_dispatch_latency_seconds_count", kind="function") >= 2
    assert value(scheduler, "puras_jobs_finished_total", state="succeeded", kind="agent") >= 1

    async def queue_gauges() -> dict[str, list[Any]] | None:
        samples = await scrape(platform, "scheduler")
        return samples if "puras_queue_depth" in samples and "puras_jobs" in samples else None

    scheduler = await eventually(queue_gauges, timeout=15, what="the queue gauges")
    assert {labels["reason"] for labels, _ in scheduler["puras_queue_depth"]} == {
        "ready",
        "no_credit",
        "concurrency",
    }
    assert {(labels["state"], labels["kind"]) for labels, _ in scheduler["puras_jobs"]} >= {
        ("queued", "function"),
        ("running", "agent"),
    }

    runner = await scrape(platform, "function-runner")
    assert value(runner, "puras_job_duration_seconds_count", consumer="function-runner-work") >= 2
    assert value(runner, "puras_sandbox_spawn_seconds_count") >= 2

    async def lag() -> dict[str, list[Any]] | None:
        samples = await scrape(platform, "function-runner")
        return samples if "puras_consumer_pending" in samples else None

    runner = await eventually(lag, timeout=15, what="consumer lag gauges")
    assert (
        value(runner, "puras_consumer_pending", stream="WORK", consumer="function-runner-work") >= 0
    )

    agent = await scrape(platform, "agent-runner")
    assert (
        value(agent, "puras_provider_request_seconds_count", provider="anthropic", outcome="ok")
        >= 1
    )

    billing = await scrape(platform, "billing")
    assert value(billing, "puras_ledger_entries_total", kind="grant") >= 1
    assert value(billing, "puras_ledger_entries_total", kind="charge") >= 1
    assert value(billing, "puras_usage_billed_micros_total", model="claude/haiku-4-5") > 0
    assert (
        value(billing, "puras_usage_tokens_total", model="claude/haiku-4-5", direction="input") > 0
    )
