"""Deployments, skillpacks and builds over the public API, with the gateway's catalogue in step:
rolling activation and rollback decide what new jobs run, a deleted version cannot be pinned,
visibility decides who may run a skillpack, and a requirements.txt is built once, reused, and
failed with pip's own message."""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from puras_gateway import keys
from puras_testing import eventually
from puras_testing.platform import Platform, Tenant
from puras_testing.wheels import find_links_index, make_wheel

pytestmark = pytest.mark.asyncio(loop_scope="session")


def versioned(label: str) -> dict[str, str]:
    return {
        "skills/which/skill.yaml": "description: Which version answers.\nentrypoint: main.py:run\n",
        "skills/which/main.py": f"def run(inputs):\n    return {{'label': {label!r}}}\n",
    }


async def pushed(tenant: Tenant, files: dict[str, str], **form: str) -> dict[str, Any]:
    response = await tenant.push(files, **form)
    assert response.status_code == 201, response.text
    return response.json()


async def test_list_activate_rollback_and_delete(platform: Platform) -> None:
    tenant = await platform.tenant(f"deploys-{uuid.uuid4().hex[:8]}")
    v1 = await pushed(tenant, versioned("one"), notes="first")
    v2 = await pushed(tenant, versioned("two"), notes="second")
    listing = (await tenant.http.get("/v1/deployments")).json()
    assert [(d["version"], d["active"], d["notes"]) for d in listing["data"]] == [
        (2, True, "second"),
        (1, False, "first"),
    ]
    assert listing["data"][0]["skills"][0]["name"] == "which"
    assert (await tenant.run("which", {}))["result"] == {"label": "two"}

    # Rollback: new jobs run v1 at once; a job pinned to v2 still runs v2.
    rolled = await tenant.http.post(f"/v1/deployments/{v1['id']}/activate")
    assert rolled.status_code == 200 and rolled.json()["active"] is True
    assert (await tenant.run("which", {}))["result"] == {"label": "one"}
    assert (await tenant.run("which", {}, version=2))["result"] == {"label": "two"}

    refused = await tenant.http.delete(f"/v1/deployments/{v1['id']}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    deleted = await tenant.http.delete(f"/v1/deployments/{v2['id']}")
    assert deleted.status_code == 200
    gone = await tenant.http.post("/v1/jobs", json={"skill": "which", "inputs": {}, "version": 2})
    assert gone.status_code == 404 and "version 2" in gone.json()["error"]["message"]
    assert (await tenant.http.get(f"/v1/deployments/{v2['id']}")).status_code == 404
    assert [d["version"] for d in (await tenant.http.get("/v1/deployments")).json()["data"]] == [1]

    one = (await tenant.http.get(f"/v1/deployments/{v1['id']}")).json()
    assert one["status"] == "ready" and one["build_log"] == "" and one["version"] == 1


async def test_push_without_activate_leaves_the_live_version(platform: Platform) -> None:
    tenant = await platform.tenant(f"staged-{uuid.uuid4().hex[:8]}")
    await pushed(tenant, versioned("live"))
    staged = await pushed(tenant, versioned("staged"), activate="false")
    assert staged["active"] is False
    assert (await tenant.run("which", {}))["result"] == {"label": "live"}
    assert (await tenant.run("which", {}, version=staged["version"]))["result"] == {
        "label": "staged"
    }


async def test_skillpacks_and_visibility_decide_who_runs_what(platform: Platform) -> None:
    owner = await platform.tenant(f"owner-{uuid.uuid4().hex[:8]}")
    caller = await platform.tenant(f"caller-{uuid.uuid4().hex[:8]}")
    await pushed(owner, versioned("tools-v1"), skillpack="tools")
    listed = (
        await owner.http.get("/v1/deployments", params={"skillpack": f"{owner.slug}/tools"})
    ).json()
    assert [d["skillpack"] for d in listed["data"]] == ["tools"]
    foreign = await owner.http.get(
        "/v1/deployments", params={"skillpack": f"{caller.slug}/default"}
    )
    assert foreign.status_code == 404

    address = f"{owner.slug}/tools/which"
    hidden = await caller.http.post("/v1/jobs", json={"skill": address, "inputs": {}})
    assert hidden.status_code == 404
    made_public = await owner.http.patch("/v1/skillpacks/tools", json={"visibility": "public"})
    assert made_public.status_code == 200 and made_public.json()["visibility"] == "public"
    ran = await caller.run(address, {})
    assert ran["status"] == "succeeded" and ran["result"] == {"label": "tools-v1"}
    assert ran["workspace"] == caller.slug  # billed to, and run in, the caller's workspace
    back = await owner.http.patch(
        f"/v1/skillpacks/{owner.slug}/tools", json={"visibility": "private"}
    )
    assert back.json()["visibility"] == "private"
    assert (
        await caller.http.post("/v1/jobs", json={"skill": address, "inputs": {}})
    ).status_code == 404

    packs = (await owner.http.get("/v1/skillpacks")).json()["data"]
    assert [(p["slug"], p["active_version"]) for p in packs] == [("tools", 1)]
    bad = await owner.http.patch("/v1/skillpacks/tools", json={"visibility": "everyone"})
    assert bad.status_code == 400


async def test_publishable_keys_cannot_manage(
    platform: Platform, admin_db: asyncpg.Connection
) -> None:
    tenant = await platform.tenant(f"pub-{uuid.uuid4().hex[:8]}")
    minted = keys.mint("publishable")
    await admin_db.execute(
        "INSERT INTO gateway.api_keys (id, workspace_id, kind, prefix, secret_sha256) VALUES ($1, $2, 'publishable', $3, $4)",
        uuid.uuid4(),
        uuid.UUID(tenant.id),
        minted.prefix,
        minted.secret_sha256,
    )
    async with httpx.AsyncClient(
        base_url=platform.url, headers={"Authorization": f"Bearer {minted.token}"}
    ) as http:
        for method, path in (
            ("GET", "/v1/deployments"),
            ("GET", "/v1/secrets"),
            ("PUT", "/v1/secrets/X"),
            ("GET", "/v1/skillpacks"),
            ("POST", f"/v1/deployments/{uuid.uuid4()}/activate"),
        ):
            response = await http.request(
                method, path, json={"value": "v"} if method == "PUT" else None
            )
            assert response.status_code == 403, (method, path, response.text)
            assert "publishable key" in response.json()["error"]["message"]


@pytest.fixture
def index_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="puras-index-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def with_requirements(index: str, requirement: str) -> dict[str, str]:
    return {
        "requirements.txt": f"--no-index\n--find-links {index}\n{requirement}\n",
        "skills/uses/skill.yaml": "entrypoint: main.py:run\n",
        "skills/uses/main.py": "import greeting\n\ndef run(inputs):\n    return {'greeting': greeting.HELLO}\n",
    }


async def ready(tenant: Tenant, response: httpx.Response) -> dict[str, Any]:
    """The pushed deployment once ready: 201 at once, or 202 then polling its status."""
    assert response.status_code in (201, 202), response.text
    deployment = response.json()

    async def settled() -> dict[str, Any] | None:
        body = (await tenant.http.get(f"/v1/deployments/{deployment['id']}")).json()
        return body if body["status"] != "building" else None

    return (
        deployment
        if response.status_code == 201
        else await eventually(settled, timeout=90, interval=0.2)
    )


async def test_a_requirements_venv_is_built_once_and_reused(
    platform: Platform, index_dir: Path
) -> None:
    make_wheel(index_dir, "greeting", "1.0", "HELLO = 'hello from a wheel'\n")
    first_tenant = await platform.tenant(f"reqs-{uuid.uuid4().hex[:8]}")
    second_tenant = await platform.tenant(f"reqs-{uuid.uuid4().hex[:8]}")
    with find_links_index(index_dir) as index:
        files = with_requirements(index, "greeting==1.0")
        first = await ready(first_tenant, await first_tenant.push(files))
    assert first["status"] == "ready" and first["active"] is True
    assert (await first_tenant.run("uses", {}))["result"] == {"greeting": "hello from a wheel"}

    # Another workspace, the same file, the index gone: no build, the same wheels, the same venv.
    again = await second_tenant.push(files)
    assert again.status_code == 201, again.text
    log = (await second_tenant.http.get(f"/v1/deployments/{again.json()['id']}")).json()[
        "build_log"
    ]
    assert (
        "already built" in log
        and first["requirements_sha256"] == again.json()["requirements_sha256"]
    )
    assert (await second_tenant.run("uses", {}))["result"] == {"greeting": "hello from a wheel"}
    venvs = platform.config.home / "runner" / "venvs"
    assert [p.name for p in venvs.iterdir() if first["requirements_sha256"].startswith(p.name)] == [
        first["requirements_sha256"][:32]
    ]


async def test_an_install_failure_fails_the_push_with_pips_message(
    platform: Platform, index_dir: Path
) -> None:
    tenant = await platform.tenant(f"badreqs-{uuid.uuid4().hex[:8]}")
    with find_links_index(index_dir) as index:
        response = await tenant.push(with_requirements(index, "greeting==9.9"))
    if response.status_code == 202:  # a slow machine: the build outlasted the push's wait
        done = await ready(tenant, response)
        assert done["status"] == "failed" and "greeting==9.9" in done["error"]
        return
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_bundle" and error["message"].startswith(
        "requirements.txt: pip could not install"
    )
    assert "No matching distribution found for greeting==9.9" in error["message"]
    (detail,) = error["details"]
    listed = (await tenant.http.get("/v1/deployments")).json()["data"]
    assert [(d["id"], d["status"], d["active"]) for d in listed] == [
        (detail["deployment_id"], "failed", False)
    ]


async def test_a_long_build_answers_202_and_jobs_wait_for_ready(
    platform: Platform, index_dir: Path
) -> None:
    make_wheel(index_dir, "greeting", "2.0", "HELLO = 'built slowly'\n")
    tenant = await platform.tenant(f"slow-{uuid.uuid4().hex[:8]}")
    live = await pushed(tenant, versioned("live"))
    gate = threading.Event()
    try:
        with find_links_index(index_dir, gate=gate) as index:
            response = await tenant.push(with_requirements(index, "greeting==2.0"))
            assert response.status_code == 202, response.text
            building = response.json()
            assert building["status"] == "building" and building["active"] is False
            shown = (await tenant.http.get(f"/v1/deployments/{building['id']}")).json()
            assert shown["status"] == "building" and "Looking in links" in shown["build_log"]
            pinned = await tenant.http.post(
                "/v1/jobs", json={"skill": "uses", "inputs": {}, "version": building["version"]}
            )
            assert (
                pinned.status_code == 409 and "still building" in pinned.json()["error"]["message"]
            )
            early = await tenant.http.post(f"/v1/deployments/{building['id']}/activate")
            assert early.status_code == 409
            # Meanwhile the active version keeps serving.
            assert (await tenant.http.get(f"/v1/deployments/{live['id']}")).json()["active"] is True
            gate.set()
            done = await ready(tenant, response)
    finally:
        gate.set()
    assert done["status"] == "ready" and "Built 1 wheel(s)" in done["build_log"]

    assert done["active"] is True  # the push asked for activation: done when the build was

    async def runs_new_code() -> dict[str, Any] | None:
        # The gateway's catalogue follows the activation event a moment later.
        response = await tenant.http.post(
            "/v1/jobs?wait=true", json={"skill": "uses", "inputs": {}}
        )
        return response.json() if response.status_code == 200 else None

    job = await eventually(runs_new_code, timeout=30, what="jobs to run on the built version")
    assert job["status"] == "succeeded" and job["result"] == {"greeting": "built slowly"}
