"""Money end to end, every service a real process: the public price table, quotes, usage charged
once and shown on the job while it runs, and credit gating at submit (402) and at dispatch (a
job queued while the balance is exhausted runs after a grant).

A stand-in runner publishes usage with :mod:`puras_pricing.metering`, exactly as the agent runner
and the media library do, on the session's NATS.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from nats.js import JetStreamContext
from puras_common import streams
from puras_common.bus import ConsumerSpec, publish, reset_consumer
from puras_common.events import UsageRecordedPayload
from puras_pricing import pricebook, usage_events
from puras_testing import eventually
from puras_testing.platform import ECHO_PROJECT, Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT = {
    **ECHO_PROJECT,
    "skills/slow/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 60\n",
    "skills/slow/main.py": """
        import time

        def run(inputs):
            time.sleep(inputs["seconds"])
            return {"slept": inputs["seconds"]}
        """,
}

# Written by hand from the spec (docs-models.md, docs-media-models-reference.md): USD.
SPEC_LLM = {  # slug: (input per 1M tokens, output per 1M tokens)
    "claude/opus-4-7": ("18.00", "90.00"),
    "claude/opus-4-6": ("18.00", "90.00"),
    "claude/opus-4-5": ("18.00", "90.00"),
    "claude/sonnet-4-7": ("3.60", "18.00"),
    "claude/sonnet-4-6": ("3.60", "18.00"),
    "claude/sonnet-4-5": ("3.60", "18.00"),
    "claude/haiku-4-5": ("0.30", "1.50"),
    "gpt/5": ("1.50", "12.00"),
    "gpt/5-mini": ("0.30", "2.40"),
    "gpt/4o": ("3.00", "12.00"),
    "gpt/4o-mini": ("0.18", "0.72"),
    "gemini/2.5-pro": ("1.50", "12.00"),
    "gemini/2.5-flash": ("0.09", "0.36"),
    "gemini/2.0-flash": ("0.12", "0.48"),
}
_GPT_SIZES = ("1024x768", "1024x1024", "1024x1536", "1920x1080", "2560x1440", "3840x2160")
SPEC_MEDIA = {  # (slug, variant): price per unit
    **{
        ("openai/gpt-image-2", f"{q} · {s}"): p
        for q, prices in {
            "low": ("0.0060", "0.0072", "0.0060", "0.0060", "0.0084", "0.014"),
            "medium": ("0.044", "0.064", "0.050", "0.048", "0.067", "0.121"),
            "high": ("0.174", "0.253", "0.198", "0.190", "0.266", "0.481"),
        }.items()
        for s, p in zip(_GPT_SIZES, prices, strict=True)
    },
    **{
        ("openai/gpt-image-2-edit", f"{q} · {s}"): p
        for q, prices in {
            "low": ("0.013", "0.018", "0.022", "0.020", "0.023", "0.029"),
            "medium": ("0.052", "0.073", "0.065", "0.064", "0.082", "0.136"),
            "high": ("0.181", "0.263", "0.214", "0.190", "0.281", "0.496"),
        }.items()
        for s, p in zip(_GPT_SIZES, prices, strict=True)
    },
    ("bytedance/seedream-v4", None): "0.036",
    ("bytedance/seedream-v4-edit", None): "0.036",
    ("google/imagen-4", None): "0.060",
    ("kuaishou/kling-v3-image", None): "0.034",
    ("bytedance/seedance-2-t2v", None): "0.364",
    ("bytedance/seedance-2-i2v", None): "0.363",
    ("bytedance/seedance-2-r2v", "without video reference"): "0.363",
    ("bytedance/seedance-2-r2v", "with video reference"): "0.218",
    ("bytedance/seedance-2-fast-t2v", None): "0.290",
    ("bytedance/seedance-2-fast-i2v", None): "0.290",
    ("bytedance/seedance-2-fast-r2v", "without video reference"): "0.290",
    ("bytedance/seedance-2-fast-r2v", "with video reference"): "0.174",
    **{
        (slug, variant): price
        for slug in ("kuaishou/kling-v3-t2v", "kuaishou/kling-v3-i2v")
        for variant, price in (
            ("audio off", "0.134"),
            ("audio on", "0.202"),
            ("audio + voice control", "0.235"),
        )
    },
    ("google/veo-3-t2v", "audio off"): "0.600",
    ("google/veo-3-t2v", "audio on"): "0.900",
    ("google/veo-3-i2v", "audio off"): "0.240",
    ("google/veo-3-i2v", "audio on"): "0.480",
    ("google/veo-3-fast-t2v", "audio off"): "0.300",
    ("google/veo-3-fast-t2v", "audio on"): "0.480",
    ("google/veo-3-fast-i2v", "audio off"): "0.300",
    ("google/veo-3-fast-i2v", "audio on"): "0.480",
}


async def spend(
    js: JetStreamContext,
    workspace_id: str,
    model: str,
    *,
    job_id: str | None = None,
    key_id: str | None = None,
    **measures: Any,
) -> int:
    """Publish one upstream call as a runner does; returns what it bills."""
    usage = UsageRecordedPayload(
        job_id=uuid.UUID(job_id) if job_id else None,
        key_id=uuid.UUID(key_id) if key_id else None,
        attempt=1,
        kind="llm" if "input_tokens" in measures else "media",
        provider="test",
        model=model,
        **measures,
    )
    events, quote = usage_events(
        pricebook(), usage, workspace_id=uuid.UUID(workspace_id), producer="test-runner"
    )
    await publish(js, events)
    return quote.billed_micros


async def balance(tenant: Tenant) -> int:
    response = await tenant.http.get("/v1/balance")
    assert response.status_code == 200, response.text
    return response.json()["balance_micros"]


async def job(tenant: Tenant, job_id: str) -> dict[str, Any]:
    response = await tenant.http.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_public_price_table_is_the_spec(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as http:
        response = await http.get("/v1/pricing")  # public: no key
    assert response.status_code == 200
    table = response.json()
    assert table["margin_pct"] == "20" and table["default_model"] == "claude/sonnet-4-6"
    llm = {
        m["slug"]: (Decimal(m["input_usd_per_mtok"]), Decimal(m["output_usd_per_mtok"]))
        for m in table["models"]
    }
    assert llm == {slug: (Decimal(i), Decimal(o)) for slug, (i, o) in SPEC_LLM.items()}
    shown = {
        (m["slug"], r["variant"]): Decimal(r["usd"])
        for m in table["media"]
        if not m["estimate"]
        for r in m["rates"]
    }
    assert shown == {key: Decimal(price) for key, price in SPEC_MEDIA.items()}
    # Models the SDK's portable helpers name without a price in the spec are marked estimates.
    assert {m["slug"] for m in table["media"] if m["estimate"]} == {
        "google/nano-banana",
        "google/nano-banana-edit",
        "kuaishou/kling-v3-r2v",
        "kuaishou/kling-avatar",
        "google/veo-3-r2v",
        "elevenlabs/tts-v3",
        "elevenlabs/tts-v2",
        "elevenlabs/scribe-v2",
    }
    assert len(shown) + 2 * len(llm) >= 20
    seedance = next(m for m in table["media"] if m["slug"] == "bytedance/seedance-2-t2v")
    assert (seedance["shape"], seedance["unit"], seedance["rates"][0]["micros"]) == (
        "per_second",
        "second",
        364_000,
    )
    kling = next(m for m in table["media"] if m["slug"] == "kuaishou/kling-v3-t2v")
    assert (
        kling["defaults"]["generate_audio"] is True
        and kling["default_rate"]["variant"] == "audio on"
    )


@pytest.mark.parametrize(
    ("body", "pointer", "needle"),
    [
        ({"model": "bytedance/seedance-2-t2"}, "/model", "did you mean bytedance/seedance-2-t2v"),
        ({"model": ""}, "/model", "at least 1 character"),
        ({"model": "bytedance/seedance-2-t2v"}, "/units", "duration is 'auto'"),
        ({"model": "bytedance/seedance-2-t2v", "units": "five"}, "/units", "not a decimal"),
        (
            {"model": "openai/gpt-image-2", "inputs": {"quality": "ultra"}},
            "/inputs/quality",
            "low, medium, high",
        ),
        ({"model": "gpt/5", "input_tokens": -1}, "/input_tokens", "greater than or equal to 0"),
        ({"model": "gpt/5", "input_tokens": 1.5}, "/input_tokens", "valid integer"),
        ({"model": "gpt/5", "input_tokens": 10**12 + 1}, "/input_tokens", "less than or equal"),
        ({"model": "gpt/5", "colour": "red"}, "/colour", "unknown field"),
    ],
)
async def test_quotes_refuse_what_cannot_be_priced(
    platform: Platform, body: dict, pointer: str, needle: str
) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as http:
        response = await http.post("/v1/pricing/quote", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and needle in error["message"]
    assert error["details"][0]["pointer"] == pointer


async def test_quotes_price_with_the_documented_defaults(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as http:
        clip = (
            await http.post(
                "/v1/pricing/quote",
                json={"model": "bytedance/seedance-2-t2v", "inputs": {"duration": "5"}},
            )
        ).json()
        veo = (await http.post("/v1/pricing/quote", json={"model": "google/veo-3-t2v"})).json()
        llm = (
            await http.post(
                "/v1/pricing/quote",
                json={"model": "claude/sonnet-4-7", "input_tokens": 1000, "output_tokens": 10},
            )
        ).json()
    assert (clip["billed_micros"], clip["billed_usd"], clip["units"], clip["unit"]) == (
        1_820_000,
        "1.82",
        "5",
        "second",
    )
    assert (veo["variant"], veo["units"], veo["billed_micros"]) == ("audio on", "8", 7_200_000)
    assert llm["billed_micros"] == 3_600 + 180


async def test_usage_is_charged_once_and_shown_on_the_job_while_it_runs(
    platform: Platform, js: JetStreamContext, admin_db: asyncpg.Connection
) -> None:
    tenant = await platform.tenant(f"usage-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    key_id = (await tenant.http.get("/v1/keys")).json()["data"][0]["id"]
    await eventually(lambda: balance(tenant), what="the opening credit")
    submitted = await tenant.http.post(
        "/v1/jobs", json={"skill": "slow", "inputs": {"seconds": 20}}
    )
    job_id = submitted.json()["id"]

    async def running() -> bool:
        return (await job(tenant, job_id))["status"] == "running"

    await eventually(running, timeout=30, what="the job to start")
    llm = await spend(
        js,
        tenant.id,
        "claude/sonnet-4-7",
        job_id=job_id,
        key_id=key_id,
        input_tokens=20_000,
        output_tokens=1_500,
    )
    video = await spend(
        js,
        tenant.id,
        "kuaishou/kling-v3-t2v",
        job_id=job_id,
        key_id=key_id,
        inputs={"duration": "5"},
    )
    assert (llm, video) == (72_000 + 27_000, 1_010_000)

    async def charged() -> dict[str, Any] | None:
        current = await job(tenant, job_id)
        return current if current["cost_micros"] == llm + video else None

    current = await eventually(charged, timeout=15, what="both charges on the job")
    assert current["status"] == "running" and current["total_cost_micros"] == llm + video
    assert await balance(tenant) == 10_000_000 - llm - video

    # A duplicate delivery (same event id, new message id, so the server does not drop it) is
    # skipped; a later event still lands, so the duplicate had its chance to be charged.
    usage_msg = await js.get_last_msg("USAGE", f"usage.{tenant.id}.recorded")
    await js.publish(
        usage_msg.subject, usage_msg.data, headers={"Nats-Msg-Id": f"redelivery-{uuid.uuid4()}"}
    )
    image = await spend(
        js, tenant.id, "openai/gpt-image-2", job_id=job_id, key_id=key_id, inputs={"quality": "low"}
    )

    async def settled() -> bool:
        return (await job(tenant, job_id))["cost_micros"] == llm + video + image

    await eventually(settled, timeout=15, what="the third charge")
    assert await balance(tenant) == 10_000_000 - llm - video - image

    first = await tenant.http.get(f"/v1/jobs/{job_id}/usage", params={"limit": 2})
    assert first.status_code == 200, first.text
    rest = await tenant.http.get(
        f"/v1/jobs/{job_id}/usage", params={"limit": 2, "cursor": first.json()["next_cursor"]}
    )
    rows = first.json()["data"] + rest.json()["data"]
    assert rest.json()["next_cursor"] is None
    assert [r["model"] for r in rows] == [
        "openai/gpt-image-2",
        "kuaishou/kling-v3-t2v",
        "claude/sonnet-4-7",
    ]
    assert (
        sum(r["billed_micros"] for r in rows) == first.json()["cost_micros"] == llm + video + image
    )
    kling = rows[1]
    assert (kling["units"], kling["unit"], kling["variant"], kling["key_id"]) == (
        "5",
        "second",
        "audio on",
        key_id,
    )
    assert (rows[2]["input_tokens"], rows[2]["output_tokens"], rows[2]["provider"]) == (
        20_000,
        1_500,
        "test",
    )

    # The job's history shows each call as a public `usage` event.
    history = await admin_db.fetch(
        """SELECT (payload->>'billed_micros')::bigint AS billed FROM gateway.job_events
           WHERE job_id = $1 AND type = 'usage' ORDER BY seq""",
        uuid.UUID(job_id),
    )
    assert [e["billed"] for e in history] == [llm, video, image]
    keys = (await tenant.http.get("/v1/keys")).json()["data"]
    assert keys[0]["spent_today_micros"] == llm + video + image


@pytest.mark.parametrize(
    ("query", "status", "needle"),
    [
        ("?limit=0", 400, "limit=0 is out of range"),
        ("?limit=201", 400, "limit=201 is out of range"),
        ("?limit=ten", 400, "valid integer"),
        ("?cursor=not-a-cursor", 400, "is not one this API returned"),
    ],
)
async def test_job_usage_validates_its_query(
    platform: Platform, query: str, status: int, needle: str
) -> None:
    tenant = await platform.tenant(f"uq-{uuid.uuid4().hex[:8]}")
    any_job = uuid.uuid4()
    response = await tenant.http.get(f"/v1/jobs/{any_job}/usage{query}")
    assert response.status_code == status and needle in response.json()["error"]["message"], (
        response.text
    )


async def test_job_usage_of_an_unknown_or_foreign_job_is_404(platform: Platform) -> None:
    owner = await platform.tenant(f"uo-{uuid.uuid4().hex[:8]}")
    assert (await owner.push(ECHO_PROJECT)).status_code == 201
    done = await owner.run("echo", {"text": "x"})
    stranger = await platform.tenant(f"us-{uuid.uuid4().hex[:8]}")
    for tenant, job_id in (
        (stranger, done["id"]),
        (owner, str(uuid.uuid4())),
        (owner, "not-a-uuid"),
    ):
        response = await tenant.http.get(f"/v1/jobs/{job_id}/usage")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"

    async def own() -> dict[str, Any] | None:
        page: dict[str, Any] = (await owner.http.get(f"/v1/jobs/{done['id']}/usage")).json()
        return page if page["data"] else None

    # An echo calls nothing: its only row is its own compute, free unless the operator prices it.
    page = await eventually(own, timeout=15, what="the echo's compute row")
    assert [(r["kind"], r["billed_micros"]) for r in page["data"]] == [("compute", 0)]
    assert (page["cost_micros"], page["next_cursor"]) == (0, None)


async def test_credit_gates_submit_and_dispatch(
    platform: Platform, js: JetStreamContext, admin_db: asyncpg.Connection
) -> None:
    funded = await platform.tenant(f"funded-{uuid.uuid4().hex[:8]}")
    tenant = await platform.tenant(f"broke-{uuid.uuid4().hex[:8]}", credit_usd="1")
    for t in (funded, tenant):
        assert (await t.push(ECHO_PROJECT)).status_code == 201
    paid = await tenant.run("echo", {"text": "while in credit"})
    assert (await funded.run("echo", {"text": "warm"}))["status"] == "succeeded"

    # A long job's last call drives the balance below zero.
    cost = await spend(
        js, tenant.id, "bytedance/seedance-2-t2v", job_id=paid["id"], inputs={"duration": "5"}
    )
    assert cost == 1_820_000

    async def exhausted() -> bool:
        scheduler = await admin_db.fetchval(
            "SELECT balance_micros FROM scheduler.balances WHERE workspace_id = $1",
            uuid.UUID(tenant.id),
        )
        return await balance(tenant) == -820_000 and scheduler == -820_000

    await eventually(
        exhausted, timeout=15, what="the charge to reach the gateway and the scheduler"
    )
    refused = await tenant.http.post(
        "/v1/jobs", json={"skill": "echo", "inputs": {"text": "no credit"}}
    )
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert error["code"] == "insufficient_credits" and "-820000 micros" in error["message"]
    assert error["details"]["balance_micros"] == -820_000

    # A grant is accepted while billing is down: the gateway counts it at once, so the job is
    # queued; the scheduler dispatches only on the ledger's balance, so the job waits.
    await platform.stop_service("billing")
    try:
        granted = await platform_grant(platform, tenant.slug, "2")
        assert granted.status_code == 202, granted.text
        waiting = await tenant.http.post(
            "/v1/jobs", json={"skill": "echo", "inputs": {"text": "after the grant"}}
        )
        assert waiting.status_code == 201, waiting.text
        waiting_id = waiting.json()["id"]
        # A later job of a funded workspace runs: the dispatcher has looked at ours and left it.
        assert (await funded.run("echo", {"text": "barrier"}))["status"] == "succeeded"
        state = await admin_db.fetchval(
            "SELECT status FROM scheduler.jobs WHERE id = $1", uuid.UUID(waiting_id)
        )
        assert state == "queued"
        assert (await job(tenant, waiting_id))["status"] == "queued"
        shown = (await tenant.http.get("/v1/balance")).json()
        assert (shown["balance_micros"], shown["pending_grants_micros"]) == (-820_000, 2_000_000)
    finally:
        await platform.start_service("billing")

    async def ran() -> dict[str, Any] | None:
        current = await job(tenant, waiting_id)
        return current if current["status"] == "succeeded" else None

    finished = await eventually(ran, timeout=30, what="the queued job to run after the grant")
    assert finished["result"] == {"echoed": "after the grant"}

    async def credited() -> int | None:
        # The gateway's ledger read model folds the grant apart from the scheduler, which ran
        # the job on it: it may be a moment behind.
        shown = await balance(tenant)
        return shown if shown != -820_000 else None

    assert await eventually(credited, timeout=30, what="the grant in the balance") == 1_180_000


async def platform_grant(platform: Platform, slug: str, usd: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=platform.url) as http:
        return await http.post(
            f"/v1/admin/workspaces/{slug}/grants",
            json={"usd": usd},
            headers=platform.admin_headers(),
        )


LEDGER_MODEL = {
    "balances": "SELECT * FROM gateway.balances ORDER BY workspace_id",
    "usage_rows": "SELECT * FROM gateway.usage_rows ORDER BY usage_id",
    "job_costs": "SELECT * FROM gateway.job_costs ORDER BY job_id",
    "key_spend": "SELECT * FROM gateway.key_spend ORDER BY key_id, day",
}


async def test_the_ledger_read_model_rebuilds_identically_from_the_stream(
    platform: Platform, js: JetStreamContext, admin_db: asyncpg.Connection
) -> None:
    tenant = await platform.tenant(f"replay-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(ECHO_PROJECT)).status_code == 201
    done = await tenant.run("echo", {"text": "x"})
    key_id = (await tenant.http.get("/v1/keys")).json()["data"][0]["id"]
    costs = [
        await spend(
            js,
            tenant.id,
            "gpt/5",
            job_id=done["id"],
            key_id=key_id,
            input_tokens=5_000,
            output_tokens=700,
        ),
        await spend(
            js,
            tenant.id,
            "google/imagen-4",
            job_id=done["id"],
            key_id=key_id,
            inputs={"num_images": 2},
        ),
    ]

    async def posted() -> bool:
        return (await job(tenant, done["id"]))["cost_micros"] == sum(costs)

    await eventually(posted, timeout=15, what="the charges")
    before = {
        name: [dict(r) for r in await admin_db.fetch(sql)] for name, sql in LEDGER_MODEL.items()
    }
    assert before["usage_rows"] and before["job_costs"] and before["key_spend"]
    compute = [r for r in before["usage_rows"] if r["job_id"] == uuid.UUID(done["id"])]
    assert sorted(r["kind"] for r in compute) == ["compute", "llm", "media"]

    # The echo's own compute is free, so its row comes from the job's history, not the ledger:
    # the usage rows are rebuilt from both streams.
    await platform.stop_service("gateway")
    try:
        await admin_db.execute(
            "TRUNCATE gateway.balances, gateway.usage_rows, gateway.job_costs, gateway.key_spend"
        )
        await admin_db.execute(
            "DELETE FROM gateway.inbox WHERE consumer IN ('gateway-ledger', 'gateway-jobs')"
        )
        await reset_consumer(
            js, ConsumerSpec(streams.LEDGER, "gateway-ledger", ("ledger.*.posted",))
        )
        await reset_consumer(js, ConsumerSpec(streams.JOBS, "gateway-jobs", ("job.>",)))
    finally:
        await platform.start_service("gateway")

    async def rebuilt() -> bool:
        return await admin_db.fetchval("SELECT count(*) FROM gateway.usage_rows") >= len(
            before["usage_rows"]
        )

    await eventually(rebuilt, timeout=60, what="the replay")
    await eventually(
        lambda: _settled(admin_db, before), timeout=30, what="the replay to reach every balance"
    )
    after = {
        name: [dict(r) for r in await admin_db.fetch(sql)] for name, sql in LEDGER_MODEL.items()
    }
    assert after == before
    assert (await job(tenant, done["id"]))["cost_micros"] == sum(costs)


async def _settled(admin_db: asyncpg.Connection, before: dict[str, list[dict[str, Any]]]) -> bool:
    return [dict(r) for r in await admin_db.fetch(LEDGER_MODEL["balances"])] == before["balances"]
