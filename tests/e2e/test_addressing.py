"""Skill addresses, version pins and rolling switches."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


def versioned(v: int, *, sleep: float = 0) -> dict[str, str]:
    return {
        "skills/which/skill.yaml": "entrypoint: main.py:run\n",
        "skills/which/main.py": f"import time\n\ndef run(inputs):\n    time.sleep({sleep})\n    return {{'version': {v}}}\n",
    }


@pytest.fixture(scope="module")
async def tenant(platform: Platform) -> Tenant:
    return await platform.tenant(f"addr-{uuid.uuid4().hex[:8]}")


async def test_pinned_versions_and_rolling_switches(tenant: Tenant) -> None:
    v1 = (await tenant.push(versioned(1, sleep=1.5))).json()
    # Submitted before the switch: it keeps version 1 although it is still running after it.
    slow = (await tenant.http.post("/v1/jobs", json={"skill": "which", "inputs": {}})).json()
    v2 = (await tenant.push(versioned(2))).json()
    assert (v1["version"], v2["version"]) == (1, 2)
    done = (
        await tenant.http.post("/v1/jobs?wait=true", json={"skill": "which", "inputs": {}})
    ).json()
    assert done["result"] == {"version": 2} and done["deployment_id"] == v2["id"]
    for _ in range(100):
        old = (await tenant.http.get(f"/v1/jobs/{slow['id']}")).json()
        if old["status"] == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert (
        old["result"] == {"version": 1} and old["deployment_id"] == v1["id"] and old["version"] == 1
    )
    pinned = await tenant.run("which", {}, version=1)
    assert pinned["result"] == {"version": 1} and pinned["version"] == 1


async def test_addresses_resolve_inside_the_callers_workspace(tenant: Tenant) -> None:
    assert (await tenant.push(versioned(7), skillpack="tools")).status_code == 201
    for body in (
        {"skill": "tools/which", "inputs": {}},
        {"skill": "which", "skillpack": "tools", "inputs": {}},
        {"skill": f"{tenant.slug}/tools/which", "inputs": {}},
        {"skill": "which", "skillpack": f"{tenant.slug}/tools", "inputs": {}},
    ):
        job = await tenant.run(**body)
        assert job["result"] == {"version": 7} and job["skillpack"] == "tools", body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"skill": "nope/which"}, "skillpack 'nope' not found"),
        ({"skill": "which", "version": 99}, "version 99 of skillpack 'default' not found"),
        (
            {"skill": "ghost-workspace/default/which"},
            "skill 'ghost-workspace/default/which' not found",
        ),
        ({"skill": "missing"}, "skill 'missing' not found in skillpack 'default'"),
    ],
)
async def test_unknown_addresses_are_404s_that_name_what_is_missing(
    tenant: Tenant, body: dict, message: str
) -> None:
    response = await tenant.http.post("/v1/jobs", json={"inputs": {}, **body})
    assert response.status_code == 404, response.text
    assert message in response.json()["error"]["message"]


async def test_unknown_workspace_skillpack_and_skill_look_the_same_from_outside(
    platform: Platform, tenant: Tenant
) -> None:
    assert (await tenant.push(versioned(2), skillpack="shared")).status_code == 201
    response = await tenant.http.patch("/v1/skillpacks/shared", json={"visibility": "public"})
    assert response.status_code == 200, response.text
    outsider = await platform.tenant(f"outsider-{uuid.uuid4().hex[:8]}")
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    addresses = {
        "unknown workspace": {"skill": f"{ghost}/default/which"},
        "private skillpack": {"skill": f"{tenant.slug}/default/which"},
        "unknown skillpack": {"skill": f"{tenant.slug}/nothing/which"},
        "unknown skill in a public skillpack": {"skill": f"{tenant.slug}/shared/nothing"},
        "unknown version": {"skill": f"{tenant.slug}/shared/which", "version": 99},
        "private skillpack by id of the workspace": {"skill": f"{tenant.id}/default/which"},
    }
    shapes = set()
    for what, body in addresses.items():
        answer = await outsider.http.post("/v1/jobs", json={"inputs": {}, **body})
        error = answer.json()["error"]
        address = body["skill"]
        assert error["message"] == f"skill '{address}' not found", (what, error)
        shape = error["message"].replace(address, "<address>")
        shapes.add((answer.status_code, error["code"], shape, repr(error["details"])))
    assert len(shapes) == 1, shapes
    assert next(iter(shapes))[:2] == (404, "not_found")


async def test_quiet_streams_get_pings(tenant: Tenant) -> None:
    assert (await tenant.push(versioned(3, sleep=2.5))).status_code == 201
    lines = []
    async with tenant.http.stream(
        "POST", "/v1/jobs?stream=true", json={"skill": "which", "inputs": {}}, timeout=30
    ) as r:
        async for line in r.aiter_lines():
            lines.append(line)
    assert lines.count(": ping") >= 1  # the test platform pings every second
    assert "event: end" in lines and lines.index(": ping") < lines.index("event: end")


async def test_a_public_skillpack_runs_from_another_workspace_as_the_callers_job(
    platform: Platform, tenant: Tenant
) -> None:
    owner = await platform.tenant(f"pub-{uuid.uuid4().hex[:8]}")
    assert (await owner.push(versioned(5), skillpack="shared")).status_code == 201
    outsider = await platform.tenant(f"caller-{uuid.uuid4().hex[:8]}")
    address = {"skill": f"{owner.slug}/shared/which", "inputs": {}}
    assert (await outsider.http.post("/v1/jobs", json=address)).status_code == 404  # private
    response = await owner.http.patch("/v1/skillpacks/shared", json={"visibility": "public"})
    assert response.status_code == 200, response.text
    job = await outsider.run(**address)
    assert job["status"] == "succeeded" and job["result"] == {"version": 5}
    assert job["workspace"] == outsider.slug and job["skillpack"] == "shared"
    assert [j["id"] for j in (await outsider.http.get("/v1/jobs")).json()["data"]] == [job["id"]]
    assert (
        await owner.http.get(f"/v1/jobs/{job['id']}")
    ).status_code == 404  # the caller's job, not the owner's
    await owner.http.patch("/v1/skillpacks/shared", json={"visibility": "private"})
    assert (await outsider.http.post("/v1/jobs", json=address)).status_code == 404
