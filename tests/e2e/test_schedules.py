"""Schedules over the public API against the running platform: an every-second schedule starts
exactly one job per tick while two scheduler processes race for it, one is killed, and both are
restarted; each job links back to its schedule; schedules declared in skill.yaml follow the
active deployment; and what cannot be a schedule is refused where it is wrong."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from puras_testing import eventually
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

TICK = {
    "skills/tick/skill.yaml": """
        entrypoint: main.py:run
        input_schema: {type: object, properties: {label: {type: string}}}
        """,
    "skills/tick/main.py": "def run(inputs):\n    return {'label': inputs.get('label')}\n",
}


@pytest.fixture(scope="module")
async def two_schedulers(platform: Platform) -> Platform:
    if "scheduler-2" not in platform.supervisor.children:
        await platform.add_replica("scheduler", "scheduler-2")
    return platform


async def scheduled_jobs(tenant: Tenant, schedule_id: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = (await tenant.http.get(f"/v1/schedules/{schedule_id}/jobs", params=params)).json()
        jobs += page["data"]
        if not (cursor := page["next_cursor"]):
            return jobs


async def fired_at_least(tenant: Tenant, schedule_id: str, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        jobs = await scheduled_jobs(tenant, schedule_id)
        return jobs if len(jobs) >= count else None

    return await eventually(enough, timeout=60, interval=0.2, what=f"{count} scheduled jobs")


async def test_every_second_fires_once_per_tick_across_replicas_a_kill_and_a_restart(
    two_schedulers: Platform,
) -> None:
    platform = two_schedulers
    tenant = await platform.tenant(f"sched-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(TICK)).status_code == 201
    created = await tenant.http.post(
        "/v1/schedules",
        json={"skill": "tick", "inputs": {"label": "hi"}, "cron": "* * * * * *", "name": "pulse"},
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert created.headers["location"] == f"/v1/schedules/{schedule['id']}"
    assert len(schedule["next_fire_times"]) == 5 and schedule["source"] == "api"

    await fired_at_least(tenant, schedule["id"], 3)
    await platform.stop_service("scheduler", kill=True)  # a crash: the other replica carries on
    before = len(await scheduled_jobs(tenant, schedule["id"]))
    await fired_at_least(tenant, schedule["id"], before + 2)
    await platform.start_service("scheduler")
    # Every scheduler down at once, then back: the ticks they missed (within the grace) fire late.
    await platform.stop_service("scheduler")
    await platform.stop_service("scheduler-2")
    await platform.start_service("scheduler")
    await platform.start_service("scheduler-2")
    before = len(await scheduled_jobs(tenant, schedule["id"]))
    await fired_at_least(tenant, schedule["id"], before + 2)

    paused = await tenant.http.patch(f"/v1/schedules/{schedule['id']}", json={"paused": True})
    assert paused.status_code == 200 and paused.json()["next_fire_times"] == []
    jobs = await scheduled_jobs(tenant, schedule["id"])
    ticks = sorted(datetime.fromisoformat(j["scheduled_for"]) for j in jobs)
    assert len(ticks) == len(set(ticks)), "a tick started two jobs"
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks)), (
        "a tick started no job",
        ticks,
    )
    assert {j["schedule_id"] for j in jobs} == {schedule["id"]}
    job = (await tenant.http.get(f"/v1/jobs/{jobs[-1]['id']}")).json()
    assert (
        job["schedule_id"] == schedule["id"] and job["scheduled_for"] == jobs[-1]["scheduled_for"]
    )
    events = (await tenant.http.get(f"/v1/jobs/{job['id']}/events")).json()["events"]
    assert events[0]["type"] == "queued" and events[0]["payload"]["schedule_id"] == schedule["id"]

    async def ran() -> dict[str, Any] | None:
        shown = (await tenant.http.get(f"/v1/schedules/{schedule['id']}")).json()
        return shown if shown["fires"] >= len(jobs) else None

    shown = await eventually(ran, what="the schedule to count its jobs")
    assert shown["last_fire"]["error"] is None and shown["paused"] is True
    assert (await tenant.http.delete(f"/v1/schedules/{schedule['id']}")).json()["deleted"] is True
    assert (await tenant.http.get(f"/v1/schedules/{schedule['id']}")).status_code == 404


async def test_schedules_in_skill_yaml_follow_the_active_deployment(
    platform: Platform, admin_db: asyncpg.Connection
) -> None:
    tenant = await platform.tenant(f"sched-yaml-{uuid.uuid4().hex[:8]}")
    declared = {
        **TICK,
        "skills/tick/skill.yaml": """
            entrypoint: main.py:run
            input_schema: {type: object, properties: {label: {type: string}}}
            schedules:
              - {name: often, cron: '* * * * * *', inputs: {label: from-yaml}}
            """,
    }
    pushed = await tenant.push(declared)
    assert pushed.status_code == 201, pushed.text
    v1 = pushed.json()
    listing = (await tenant.http.get("/v1/schedules")).json()["data"]
    assert [(s["name"], s["source"], s["deployment_id"]) for s in listing] == [
        ("often", "deployment", v1["id"])
    ]
    schedule_id = listing[0]["id"]
    (job, *_) = await fired_at_least(tenant, schedule_id, 1)

    async def succeeded() -> dict[str, Any] | None:
        body = (await tenant.http.get(f"/v1/jobs/{job['id']}")).json()
        return body if body["status"] == "succeeded" else None

    assert (await eventually(succeeded, what="the scheduled job"))["result"] == {
        "label": "from-yaml"
    }

    changed = await tenant.http.patch(f"/v1/schedules/{schedule_id}", json={"cron": "@daily"})
    assert changed.status_code == 409 and changed.json()["error"]["details"][0]["pointer"] == (
        "/cron"
    )
    assert (await tenant.http.delete(f"/v1/schedules/{schedule_id}")).status_code == 409
    paused = await tenant.http.patch(f"/v1/schedules/{schedule_id}", json={"paused": True})
    assert paused.status_code == 200 and paused.json()["paused"] is True

    # A deployment without it: the schedule is gone, in the gateway and in the scheduler.
    assert (await tenant.push(TICK)).status_code == 201
    assert (await tenant.http.get("/v1/schedules")).json()["data"] == []

    async def stopped() -> bool:
        return bool(
            await admin_db.fetchval(
                "SELECT deleted FROM scheduler.schedules WHERE id = $1", uuid.UUID(schedule_id)
            )
        )

    await eventually(stopped, what="the scheduler to forget the schedule")


async def test_what_cannot_be_a_schedule_is_refused_where_it_is_wrong(platform: Platform) -> None:
    tenant = await platform.tenant(f"sched-bad-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(TICK)).status_code == 201
    base = {"skill": "tick", "cron": "*/5 * * * *"}
    for body, status, pointer in (
        ({**base, "cron": "61 * * * *"}, 400, "/cron"),
        ({**base, "cron": "0 0 30 2 *"}, 400, "/cron"),
        ({**base, "timezone": "Mars/Olympus"}, 400, "/timezone"),
        ({**base, "inputs": {"label": 7}}, 422, "/inputs/label"),
        ({**base, "missed": "later"}, 400, "/missed"),
        ({**base, "catch_up_limit": 101}, 400, "/catch_up_limit"),
        ({**base, "every": 5}, 400, "/every"),
        ({**base, "inputs": {"label": "x" * 70_000}}, 413, "/inputs"),
    ):
        response = await tenant.http.post("/v1/schedules", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["details"][0]["pointer"] == pointer, response.text
    missing = await tenant.http.post("/v1/schedules", json={**base, "skill": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    hourly = "0" * 112 + " * * * *"  # minute 0, written in 120 characters
    at_edge = await tenant.http.post(
        "/v1/schedules", json={**base, "cron": hourly, "inputs": {"label": "x" * 65_000}}
    )
    assert at_edge.status_code == 201, at_edge.text  # inputs just under 64 KiB
    over = await tenant.http.post("/v1/schedules", json={**base, "cron": "0" + hourly})
    assert over.status_code == 400 and over.json()["error"]["details"][0]["pointer"] == "/cron"

    other = await platform.tenant(f"sched-other-{uuid.uuid4().hex[:8]}")
    mine = (await tenant.http.post("/v1/schedules", json={**base, "paused": True})).json()
    third = await tenant.http.post("/v1/schedules", json={**base, "paused": True})
    assert third.status_code == 201  # the test platform allows three schedules a workspace
    fourth = await tenant.http.post("/v1/schedules", json={**base, "paused": True})
    assert fourth.status_code == 409 and "the limit is 3" in fourth.json()["error"]["message"]
    for method, path in (
        ("GET", f"/v1/schedules/{mine['id']}"),
        ("PATCH", f"/v1/schedules/{mine['id']}"),
        ("DELETE", f"/v1/schedules/{mine['id']}"),
        ("GET", f"/v1/schedules/{mine['id']}/jobs"),
    ):
        kwargs: dict[str, Any] = {"json": {"paused": False}} if method == "PATCH" else {}
        response = await other.http.request(method, path, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
    assert (await other.http.get("/v1/schedules")).json()["data"] == []

    minted = await tenant.http.post("/v1/keys", json={"kind": "publishable", "name": "app"})
    publishable = {"Authorization": f"Bearer {minted.json()['api_key']}"}
    refused = await tenant.http.post("/v1/schedules", json=base, headers=publishable)
    assert refused.status_code == 403
