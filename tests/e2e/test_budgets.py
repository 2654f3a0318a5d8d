"""Budgets as holds, end to end: a key's daily cap bounds what its agent jobs spend, however many
run at once, because every model call first holds its maximum cost with billing."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from puras_pricing import Pricebook
from puras_testing import eventually
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import Platform

pytestmark = pytest.mark.asyncio(loop_scope="session")


def project(marker: str) -> dict[str, str]:
    return {
        "skills/answer/skill.yaml": (
            "description: Answer briefly.\n"
            "entrypoint: SKILL.md\n"
            "model: gemini/2.5-flash\n"
            "output_schema: {type: object, properties: {answer: {type: string}}, required: [answer]}\n"
        ),
        "skills/answer/SKILL.md": f"Answer briefly, then call set_output. {marker}\n",
    }


async def test_twelve_concurrent_agent_jobs_never_spend_past_a_1000_micro_cap(
    platform: Platform, model_provider: ModelStub, admin_db: asyncpg.Connection
) -> None:
    marker = f"budget-{uuid.uuid4().hex}"
    tenant = await platform.tenant(f"budget-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(project(marker))).status_code == 201
    # Each call reports 1,000 input and 1,000 output tokens on gemini/2.5-flash: 450 micros.
    model_provider.script(
        Reply(
            tool_calls=[Call("set_output", {"answer": "42"})],
            input_tokens=1000,
            output_tokens=1000,
        ),
        match=marker,
    )
    minted = await tenant.http.post(
        "/v1/keys", json={"kind": "publishable", "name": "app", "daily_cap_micros": 1_000}
    )
    assert minted.status_code == 201, minted.text
    key = minted.json()
    async with httpx.AsyncClient(
        base_url=platform.url, headers={"Authorization": f"Bearer {key['api_key']}"}, timeout=90
    ) as app:
        answers = await asyncio.gather(
            *(
                app.post("/v1/jobs?wait=true&timeout=60", json={"skill": "answer", "inputs": {}})
                for _ in range(12)
            )
        )
    jobs = []
    for answer in answers:
        if answer.status_code == 429:  # refused at submit: the cap was already spent
            assert answer.json()["error"]["code"] == "spend_cap_reached"
            continue
        assert answer.status_code == 200, answer.text
        jobs.append(answer.json())
    assert all(j["status"] in ("succeeded", "failed") for j in jobs), jobs
    succeeded = [j for j in jobs if j["status"] == "succeeded"]
    failed = [j for j in jobs if j["status"] == "failed"]
    assert succeeded, "the cap pays for at least one call"
    assert failed, "the cap cannot pay for twelve calls"
    for job in failed:
        assert job["error"].startswith("spend_cap_reached"), job
        assert job["error_detail"]["code"] == "spend_cap_reached"
        assert job["error_detail"]["daily_cap_micros"] == 1_000
        assert job["cost_micros"] == 0
    assert sum(j["cost_micros"] for j in jobs) <= 1_000

    async def charged() -> int | None:
        total = await admin_db.fetchval(
            "SELECT coalesce(sum(billed_micros), 0) FROM billing.usage WHERE key_id = $1",
            uuid.UUID(key["id"]),
        )
        return int(total) if total == 450 * len(succeeded) else None

    # What billing charged the key over the day, the only number that matters, is under the cap.
    assert await eventually(charged, timeout=20, what="the charges of the key") <= 1_000
    open_holds = await admin_db.fetchval(
        "SELECT count(*) FROM billing.holds WHERE key_id = $1 AND ended_at IS NULL",
        uuid.UUID(key["id"]),
    )
    assert open_holds == 0  # every hold was settled by its charge or released

    async def shown() -> bool:
        listed = (await tenant.http.get("/v1/keys")).json()["data"]
        spent = next(k for k in listed if k["id"] == key["id"])["spent_today_micros"]
        return spent == 450 * len(succeeded)

    await eventually(shown, timeout=15, what="the key's spend in the listing")


async def test_a_call_waits_for_holds_in_flight_instead_of_failing_while_money_is_left(
    platform: Platform, model_provider: ModelStub, admin_db: asyncpg.Connection
) -> None:
    """Two jobs at once under a cap that pays for both calls' charges but not both calls' holds:
    the second call waits for the first one's hold to settle, then runs. Neither job fails."""
    marker = f"budget-{uuid.uuid4().hex}"
    tenant = await platform.tenant(f"budget-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(project(marker))).status_code == 201
    answer = Reply(
        tool_calls=[Call("set_output", {"answer": "42"})], input_tokens=1000, output_tokens=1000
    )
    model_provider.script(answer, answer, answer, match=marker)
    # A probe job under the workspace's own key (no cap) shows what one call holds at most.
    probe = await tenant.http.post(
        "/v1/jobs?wait=true&timeout=60", json={"skill": "answer", "inputs": {}}
    )
    assert probe.status_code == 200 and probe.json()["status"] == "succeeded", probe.text
    most = await admin_db.fetchval(
        "SELECT amount_micros FROM billing.holds WHERE job_id = $1", uuid.UUID(probe.json()["id"])
    )
    prices = Pricebook()
    output = prices.quote("gemini/2.5-flash", input_tokens=0, output_tokens=8192).billed_micros
    floor = prices.quote("gemini/2.5-flash", input_tokens=0, output_tokens=1024).billed_micros
    least = most - (output - floor)  # what a call must hold to run at all: input and 1,024 out
    cap = 450 + least + 50  # the first call's charge, then the second call's least hold
    assert cap < most + least  # so the second call cannot be held while the first one is
    minted = await tenant.http.post(
        "/v1/keys", json={"kind": "publishable", "name": "app", "daily_cap_micros": cap}
    )
    assert minted.status_code == 201, minted.text
    async with httpx.AsyncClient(
        base_url=platform.url,
        headers={"Authorization": f"Bearer {minted.json()['api_key']}"},
        timeout=90,
    ) as app:
        answers = await asyncio.gather(
            *(
                app.post("/v1/jobs?wait=true&timeout=60", json={"skill": "answer", "inputs": {}})
                for _ in range(2)
            )
        )
    jobs = [a.json() for a in answers]
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"], [j["error"] for j in jobs]

    async def charged() -> bool:
        total = await admin_db.fetchval(
            "SELECT coalesce(sum(billed_micros), 0) FROM billing.usage WHERE key_id = $1",
            uuid.UUID(minted.json()["id"]),
        )
        return bool(total == 900)

    await eventually(charged, timeout=20, what="both calls charged to the key")
