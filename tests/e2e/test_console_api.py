"""The public read endpoints the console is built on, over HTTP: jobs filtered by skill, key,
parent and time; jobs per status; a job's inputs (to run it again); the workspace's usage, its
CSV export and spend per day and per model; and the pages' own rules (sign-in redirect, CSP,
offline API reference)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from puras_common.bus import publish
from puras_common.events import UsageRecordedPayload
from puras_pricing import pricebook, usage_events
from puras_testing import eventually
from puras_testing.platform import ECHO_PROJECT, Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT = {
    **ECHO_PROJECT,
    "skills/shout/skill.yaml": "entrypoint: main.py:run\n",
    "skills/shout/main.py": "def run(inputs):\n    return {'loud': inputs['text'].upper()}\n",
}


async def tenant_with_jobs(platform: Platform) -> tuple[Tenant, dict[str, str]]:
    tenant = await platform.tenant(f"reads-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    other_key = (await tenant.http.post("/v1/keys", json={"name": "other"})).json()
    jobs = {
        "echo": (await tenant.run("echo", {"text": "one"}))["id"],
        "shout": (await tenant.run("shout", {"text": "two"}))["id"],
    }
    async with httpx.AsyncClient(
        base_url=platform.url, headers={"Authorization": f"Bearer {other_key['api_key']}"}
    ) as other:
        response = await other.post(
            "/v1/jobs?wait=true", json={"skill": "echo", "inputs": {"text": "three"}}
        )
        jobs["other"] = response.json()["id"]
    jobs["other_key"] = other_key["id"]
    return tenant, jobs


async def test_jobs_are_filtered_by_skill_key_and_time(platform: Platform) -> None:
    tenant, jobs = await tenant_with_jobs(platform)

    async def listed(**params: str) -> list[str]:
        response = await tenant.http.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["data"]]

    assert await listed(skill="echo") == [jobs["other"], jobs["echo"]]
    assert await listed(skill="default/shout") == [jobs["shout"]]
    assert await listed(skill="other-pack/echo") == []
    assert await listed(key=jobs["other_key"]) == [jobs["other"]]
    job = (await tenant.http.get(f"/v1/jobs/{jobs['other']}")).json()
    assert job["key_id"] == jobs["other_key"]
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert await listed(created_after=later) == []
    assert len(await listed(created_before=later, status="succeeded")) == 3
    assert await listed(parent=jobs["echo"]) == []
    bad = await tenant.http.get("/v1/jobs", params={"key": "not-an-id"})
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["pointer"] == "?key"
    summary = (await tenant.http.get("/v1/jobs/summary", params={"days": 1})).json()
    assert summary["by_status"] == {
        "queued": 0,
        "running": 0,
        "waiting": 0,
        "succeeded": 3,
        "failed": 0,
        "cancelled": 0,
    }
    assert summary["total"] == 3
    inputs = (await tenant.http.get(f"/v1/jobs/{jobs['shout']}/inputs")).json()
    assert inputs == {
        "job_id": jobs["shout"],
        "skill": "default/shout",
        "version": 1,
        "inputs": {"text": "two"},
    }
    other = await platform.tenant(f"reads-other-{uuid.uuid4().hex[:8]}")
    assert (await other.http.get(f"/v1/jobs/{jobs['shout']}/inputs")).status_code == 404


async def test_usage_lists_exports_and_sums_every_billed_call(
    platform: Platform, js: JetStreamContext
) -> None:
    tenant, jobs = await tenant_with_jobs(platform)
    book = pricebook()
    billed = []
    for days_ago, model, tokens in ((0, "claude/sonnet-4-7", 1000), (2, "gpt/5-mini", 50_000)):
        usage = UsageRecordedPayload(
            job_id=uuid.UUID(jobs["echo"]) if days_ago == 0 else None,
            kind="llm",
            provider="test",
            model=model,
            input_tokens=tokens,
            output_tokens=10,
        )
        events, quote = usage_events(
            book, usage, workspace_id=uuid.UUID(tenant.id), producer="test-runner"
        )
        when = datetime.now(UTC) - timedelta(days=days_ago)
        await publish(js, [e.model_copy(update={"occurred_at": when}) for e in events])
        billed.append(quote.billed_micros)

    def calls(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows of the two calls above; the others are the jobs' own (free) compute."""
        return [r for r in rows if r["kind"] != "compute"]

    async def both_rows() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = (await tenant.http.get("/v1/usage")).json()["data"]
        return rows if len(calls(rows)) == 2 else None

    rows = await eventually(both_rows, timeout=15, what="two usage rows")
    assert [r["model"] for r in calls(rows)] == ["claude/sonnet-4-7", "gpt/5-mini"]  # newest first
    assert [r["billed_micros"] for r in calls(rows)] == billed
    assert all(r["billed_micros"] == 0 for r in rows if r["kind"] == "compute")
    paged, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await tenant.http.get("/v1/usage", params=params)).json()
        paged += page["data"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert [r["id"] for r in paged] == [r["id"] for r in rows]

    summary = (await tenant.http.get("/v1/usage/summary", params={"days": 7})).json()
    assert len(summary["by_day"]) == 7 and summary["total_micros"] == sum(billed)
    assert summary["by_day"][-1]["billed_micros"] == billed[0]
    assert summary["by_day"][-3]["billed_micros"] == billed[1]
    assert {m["model"]: m["billed_micros"] for m in summary["by_model"]} == {
        "claude/sonnet-4-7": billed[0],
        "gpt/5-mini": billed[1],
        "puras/compute": 0,
    }
    one_day = (await tenant.http.get("/v1/usage/summary", params={"days": 1})).json()
    assert one_day["total_micros"] == billed[0]

    export = await tenant.http.get("/v1/usage/export")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert f"usage-{tenant.slug}-" in export.headers["content-disposition"]
    table = calls(list(csv.DictReader(io.StringIO(export.text))))
    assert [(r["model"], int(r["billed_micros"])) for r in table] == [
        ("claude/sonnet-4-7", billed[0]),
        ("gpt/5-mini", billed[1]),
    ]
    assert table[0]["job_id"] == jobs["echo"] and table[1]["job_id"] == ""
    too_long = await tenant.http.get(
        "/v1/usage/export",
        params={"since": "2020-01-01T00:00:00Z", "until": "2022-01-01T00:00:00Z"},
    )
    assert too_long.status_code == 400 and "366 days" in too_long.json()["error"]["message"]
    naive = await tenant.http.get("/v1/usage/export", params={"since": "2025-01-01T00:00:00"})
    assert naive.status_code == 400


async def test_console_pages_need_a_session_and_ship_a_strict_policy(platform: Platform) -> None:
    tenant = await platform.tenant(f"pages-{uuid.uuid4().hex[:8]}")
    email = f"owner@{tenant.slug}.example"
    await platform.add_user(tenant.slug, email)
    async with httpx.AsyncClient(base_url=platform.url) as anon:
        page = await anon.get(f"/console/{tenant.slug}/jobs")
        assert page.status_code == 303
        assert page.headers["location"] == f"/console/login?next=/console/{tenant.slug}/jobs"
        login = await anon.get("/console/login")
        assert login.status_code == 200 and "Sign in" in login.text
        assert "script-src 'self'" in login.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
        script = await anon.get("/console/static/console.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        docs = await anon.get("/docs")
        assert "/docs/assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
        assert (await anon.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
    person = await platform.sign_in(email)
    mine = await person.http.get(f"/console/{tenant.slug}/playground")
    assert mine.status_code == 200
    assert f'data-workspace="{tenant.slug}"' in mine.text and person.csrf in mine.text
    # The job page's script builds API paths from the id in its URL: only an id is served.
    crafted = await person.http.get(f"/console/{tenant.slug}/jobs/..%2Fdeployments%2Fx")
    assert crafted.status_code == 404 and "data-job" not in crafted.text
    other = await platform.tenant(f"pages-other-{uuid.uuid4().hex[:8]}")
    theirs = await person.http.get(f"/console/{other.slug}/playground")
    assert theirs.status_code == 404 and other.slug not in theirs.text
    home = await person.http.get("/console")
    assert home.status_code == 303 and home.headers["location"] == f"/console/{tenant.slug}"
