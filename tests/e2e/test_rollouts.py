"""Ramped rollouts over the public API: a deployment activated with ``traffic_percent`` takes
that share of the skillpack's unpinned jobs (by routing key, else at random), the deployment
shows each version's jobs, error rate and cost while it ramps, and ``promote`` and ``rollback``
move all of the traffic at once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from puras_testing import eventually
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

JOBS = 500
PERCENT = 30


def version(label: str, *, fail_every: int = 0) -> dict[str, str]:
    """A project whose ``which`` skill answers ``label`` (and fails when ``n`` is a multiple of
    ``fail_every``)."""
    fail = f"    if {fail_every} and inputs.get('n', 1) % {fail_every} == 0:\n        raise ValueError('broken')\n"
    return {
        "skills/which/skill.yaml": "entrypoint: main.py:run\n",
        "skills/which/main.py": f"def run(inputs):\n{fail}    return {{'label': {label!r}}}\n",
    }


async def submit(tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = await tenant.http.post("/v1/jobs", json={"skill": "which", **body})
    assert response.status_code == 201, response.text
    return response.json()


async def submit_many(tenant: Tenant, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(16)

    async def one(body: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await submit(tenant, **body)

    return await asyncio.gather(*(one(b) for b in bodies))


async def test_a_ramp_splits_traffic_reports_per_version_then_promotes_and_rolls_back(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"ramp-{uuid.uuid4().hex[:8]}", credit_usd="100")
    v1 = (await tenant.push(version("one"))).json()
    v2 = (await tenant.push(version("two", fail_every=4), activate="false")).json()

    ramped = await tenant.http.post(
        f"/v1/deployments/{v2['id']}/activate", json={"traffic_percent": PERCENT}
    )
    assert ramped.status_code == 200, ramped.text
    assert ramped.json()["traffic_percent"] == PERCENT and ramped.json()["active"] is False

    jobs = await submit_many(tenant, [{"inputs": {"n": n}} for n in range(JOBS)])
    split = Counter(job["version"] for job in jobs)
    # Binomial(500, 0.3): mean 150, sd ≈ 10.2; ±45 is over four standard deviations.
    assert abs(split[2] - JOBS * PERCENT / 100) <= 45, split
    assert split[1] + split[2] == JOBS

    # A routing key always lands on the same version.
    keyed = await submit_many(
        tenant, [{"inputs": {"n": 1}, "routing_key": f"user-{k % 20}"} for k in range(60)]
    )
    by_key: dict[str, set[int]] = {}
    for k, job in enumerate(keyed):
        by_key.setdefault(f"user-{k % 20}", set()).add(job["version"])
    assert all(len(v) == 1 for v in by_key.values()), by_key

    async def rollout() -> dict[str, Any] | None:
        body = (await tenant.http.get(f"/v1/deployments/{v2['id']}")).json()
        versions = {v["version"]: v for v in body["rollout"]["versions"]}
        done = sum(v["succeeded"] + v["failed"] for v in versions.values())
        return versions if done == JOBS + len(keyed) else None

    versions = await eventually(rollout, timeout=90, what="every ramped job to end")
    ran = Counter(job["version"] for job in [*jobs, *keyed])
    assert versions[1]["jobs"] == ran[1] and versions[2]["jobs"] == ran[2]
    assert versions[1]["traffic_percent"] == 100 - PERCENT
    assert versions[2]["traffic_percent"] == PERCENT
    assert versions[1]["failed"] == 0 and versions[1]["error_rate"] == 0.0
    failed_v2 = sum(1 for n, job in enumerate(jobs) if job["version"] == 2 and n % 4 == 0)
    assert versions[2]["failed"] == failed_v2 > 0
    assert versions[2]["error_rate"] == round(failed_v2 / ran[2], 4)
    assert versions[1]["cost_micros"] == 0  # function jobs make no billed calls

    promoted = await tenant.http.post(f"/v1/deployments/{v2['id']}/promote")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["active"] is True and promoted.json()["traffic_percent"] == 100
    after = await submit_many(tenant, [{"inputs": {"n": 1}} for _ in range(20)])
    assert {job["version"] for job in after} == {2}
    assert "rollout" not in (await tenant.http.get(f"/v1/deployments/{v2['id']}")).json()

    rolled = await tenant.http.post(f"/v1/deployments/{v2['id']}/rollback")
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["id"] == v1["id"] and rolled.json()["active"] is True
    after = await submit_many(tenant, [{"inputs": {"n": 1}} for _ in range(20)])
    assert {job["version"] for job in after} == {1}


async def test_rolling_back_a_ramp_returns_its_share_and_the_rules_hold(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"ramp-rules-{uuid.uuid4().hex[:8]}")
    v1 = (await tenant.push(version("one"))).json()
    v2 = (await tenant.push(version("two"), activate="false")).json()

    refused = await tenant.http.post(
        f"/v1/deployments/{v1['id']}/activate", json={"traffic_percent": 50}
    )
    assert refused.status_code == 409 and "already the active" in refused.json()["error"]["message"]
    bad = await tenant.http.post(
        f"/v1/deployments/{v2['id']}/activate", json={"traffic_percent": 0}
    )
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["pointer"] == (
        "/traffic_percent"
    )
    too_much = await tenant.http.post(
        f"/v1/deployments/{v2['id']}/activate", json={"traffic_percent": 101}
    )
    assert too_much.status_code == 400
    not_ramping = await tenant.http.post(f"/v1/deployments/{v2['id']}/promote")
    assert not_ramping.status_code == 409
    longest = await submit(tenant, inputs={}, routing_key="k" * 200)
    assert longest["version"] == 1
    too_long = await tenant.http.post(
        "/v1/jobs", json={"skill": "which", "inputs": {}, "routing_key": "k" * 201}
    )
    assert too_long.status_code == 400
    assert too_long.json()["error"]["details"][0]["pointer"] == "/routing_key"

    ramped = await tenant.http.post(
        f"/v1/deployments/{v2['id']}/activate", json={"traffic_percent": 99}
    )
    assert ramped.status_code == 200
    assert (await tenant.http.delete(f"/v1/deployments/{v2['id']}")).status_code == 409
    stuck = await tenant.http.post(f"/v1/deployments/{v1['id']}/rollback")
    assert stuck.status_code == 409 and "ramping" in stuck.json()["error"]["message"]
    pinned = await submit(tenant, inputs={}, version=1)
    assert pinned["version"] == 1  # a pinned version ignores the ramp

    rolled = await tenant.http.post(f"/v1/deployments/{v2['id']}/rollback")
    assert rolled.status_code == 200 and rolled.json()["id"] == v1["id"]
    after = await submit_many(tenant, [{"inputs": {}} for _ in range(20)])
    assert {job["version"] for job in after} == {1}
    skillpack = (await tenant.http.get("/v1/skillpacks/default")).json()
    assert skillpack["ramp"] is None and skillpack["active_version"] == 1
