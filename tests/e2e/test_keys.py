"""API keys over HTTP: minting, listing, revoking, and the fences a key carries: publishable
keys only submit and read their own jobs (403), skill allowlists (403), daily spend caps over the
UTC day (429 with Retry-After)."""

from __future__ import annotations

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


def client(platform: Platform, api_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=platform.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    )


async def spend(
    js: JetStreamContext, tenant: Tenant, *, job_id: str, key_id: str, model: str, inputs: dict
) -> int:
    """Publish one media call of a job as a runner does; returns what it bills."""
    usage = UsageRecordedPayload(
        job_id=uuid.UUID(job_id),
        key_id=uuid.UUID(key_id),
        kind="media",
        provider="test",
        model=model,
        inputs=inputs,
    )
    events, quote = usage_events(
        pricebook(), usage, workspace_id=uuid.UUID(tenant.id), producer="test-runner"
    )
    await publish(js, events)
    return quote.billed_micros


async def mint(tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = await tenant.http.post("/v1/keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_publishable_key_submits_and_reads_only_its_own_jobs(platform: Platform) -> None:
    tenant = await platform.tenant(f"pub-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    key = await mint(tenant, kind="publishable", name="mobile app")
    assert key["api_key"].startswith("puras_pub_") and key["prefix"] == key["api_key"].split(".")[0]
    assert (key["kind"], key["name"], key["allowed_skills"], key["daily_cap_micros"]) == (
        "publishable",
        "mobile app",
        None,
        None,
    )
    theirs = await tenant.run("echo", {"text": "secret key's job"})

    async with client(platform, key["api_key"]) as app:
        mine = await app.post(
            "/v1/jobs?wait=true", json={"skill": "echo", "inputs": {"text": "from the app"}}
        )
        assert mine.status_code == 200 and mine.json()["status"] == "succeeded", mine.text
        for path in ("", "/usage", "/events"):
            assert (await app.get(f"/v1/jobs/{mine.json()['id']}{path}")).status_code == 200
        other = await app.get(f"/v1/jobs/{theirs['id']}")
        missing = await app.get(f"/v1/jobs/{uuid.uuid4()}")
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
        assert other.json()["error"]["message"] == f"job {theirs['id']} not found"
        assert missing.json()["error"]["message"].endswith(" not found")
        for method, path in (
            ("GET", "/v1/balance"),
            ("GET", "/v1/keys"),
            ("POST", "/v1/keys"),
            ("DELETE", f"/v1/keys/{key['id']}"),
            ("POST", "/v1/deployments"),
            ("GET", "/v1/jobs"),
            ("GET", "/v1/secrets"),
            ("GET", "/v1/drive/list"),
            ("POST", f"/v1/jobs/{mine.json()['id']}/cancel"),
            ("GET", f"/v1/jobs/{mine.json()['id']}/feedback"),
            ("GET", f"/v1/jobs/{mine.json()['id']}/feedback/stats"),
        ):
            response = await app.request(method, path, json={})
            assert response.status_code == 403, (method, path, response.text)
            assert "a publishable key may only submit jobs" in response.json()["error"]["message"]


HINTED = {
    "skills/shout/skill.yaml": """
        entrypoint: main.py:run
        input_schema:
          type: object
          properties:
            text: {type: string, x-puras: {widget: long_text, placeholder: say it}}
        """,
}


async def test_a_publishable_key_sends_feedback_on_its_jobs_and_reads_its_skills(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"pubfb-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push({**PROJECT, **HINTED})).status_code == 201
    key = await mint(tenant, kind="publishable", allowed_skills=["shout"])
    theirs = await tenant.http.post("/v1/jobs", json={"skill": "echo", "inputs": {"text": "x"}})
    async with client(platform, key["api_key"]) as app:
        skills = await app.get("/v1/skills")
        assert skills.status_code == 200, skills.text
        [shout] = skills.json()["data"]
        assert shout["name"] == "shout"
        assert shout["input_schema"]["properties"]["text"]["x-puras"] == {
            "widget": "long_text",
            "placeholder": "say it",
        }
        mine = (await app.post("/v1/jobs", json={"skill": "shout", "inputs": {"text": "a"}})).json()
        rated = await app.post(
            f"/v1/jobs/{mine['id']}/feedback", json={"rating": 1, "end_user_id": "u1"}
        )
        assert rated.status_code == 200 and rated.json()["rating"] == 1, rated.text
        other = await app.post(f"/v1/jobs/{theirs.json()['id']}/feedback", json={"rating": 1})
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    stats = await tenant.http.get(f"/v1/jobs/{mine['id']}/feedback/stats")
    assert stats.json() == {"up": 1, "down": 0, "count": 1, "score": 1}
    everything = (await tenant.http.get("/v1/skills")).json()["data"]
    assert sorted(s["name"] for s in everything) == ["echo", "shout"]


async def test_an_allowlist_refuses_other_skills_by_name(platform: Platform) -> None:
    tenant = await platform.tenant(f"allow-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    key = await mint(
        tenant, kind="publishable", allowed_skills=["echo", f"{tenant.slug}/default/echo"]
    )
    async with client(platform, key["api_key"]) as app:
        allowed = await app.post(
            "/v1/jobs", json={"skill": "default/echo", "inputs": {"text": "ok"}}
        )
        assert allowed.status_code == 201, allowed.text
        refused = await app.post("/v1/jobs", json={"skill": "shout", "inputs": {"text": "no"}})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "skill_not_allowed" and "default/shout" in error["message"]
    assert error["details"][0]["pointer"] == "/skill"
    # The same fence on a secret key.
    secret = await mint(tenant, allowed_skills=["default/shout"])
    async with client(platform, secret["api_key"]) as backend:
        assert (
            await backend.post("/v1/jobs", json={"skill": "echo", "inputs": {"text": "x"}})
        ).status_code == 403
        assert (
            await backend.post("/v1/jobs", json={"skill": "shout", "inputs": {"text": "x"}})
        ).status_code == 201


async def test_a_daily_cap_refuses_submits_until_midnight_utc(
    platform: Platform, js: JetStreamContext
) -> None:
    tenant = await platform.tenant(f"cap-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    key = await mint(tenant, kind="publishable", daily_cap_micros=64_000)
    async with client(platform, key["api_key"]) as app:
        first = await app.post(
            "/v1/jobs?wait=true", json={"skill": "echo", "inputs": {"text": "under the cap"}}
        )
        assert first.status_code == 200, first.text
        # The job made a $0.064 image call: exactly the cap.
        assert (
            await spend(
                js,
                tenant,
                model="openai/gpt-image-2",
                job_id=first.json()["id"],
                key_id=key["id"],
                inputs={"quality": "medium", "size": "1024x1024"},
            )
            == 64_000
        )

        async def spent() -> bool:
            listed = (await tenant.http.get("/v1/keys")).json()["data"]
            return next(k for k in listed if k["id"] == key["id"])["spent_today_micros"] == 64_000

        await eventually(spent, timeout=15, what="the spend to reach the key")
        refused = await app.post("/v1/jobs", json={"skill": "echo", "inputs": {"text": "over"}})
        now = datetime.now(UTC)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "spend_cap_reached" and "64000 micros" in error["message"]
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 86_400 and abs(retry_after - (midnight - now).total_seconds()) < 5
    assert error["details"]["resets_at"] == midnight.isoformat()
    # The cap is the key's: the workspace's other keys still submit.
    assert (await tenant.run("echo", {"text": "secret key"}))["status"] == "succeeded"


async def test_revocation_takes_effect_on_the_next_request(platform: Platform) -> None:
    tenant = await platform.tenant(f"revoke-{uuid.uuid4().hex[:8]}")
    key = await mint(tenant, name="to revoke")
    async with client(platform, key["api_key"]) as backend:
        assert (await backend.get("/v1/balance")).status_code == 200
        used = await last_used(tenant, key["id"])
        assert used is not None
        assert (await backend.get("/v1/balance")).status_code == 200
        assert await last_used(tenant, key["id"]) == used  # written at most once a minute
        revoked = await tenant.http.delete(f"/v1/keys/{key['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        again = await tenant.http.delete(f"/v1/keys/{key['id']}")
        assert (
            again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
        )
        refused = await backend.get("/v1/balance")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "revoked_key"
    listed = {k["id"]: k for k in (await tenant.http.get("/v1/keys")).json()["data"]}
    assert (
        listed[key["id"]]["last_used_at"] is not None
        and listed[key["id"]]["revoked_at"] is not None
    )
    assert all("api_key" not in k for k in listed.values())


async def last_used(tenant: Tenant, key_id: str) -> str | None:
    listed = (await tenant.http.get("/v1/keys")).json()["data"]
    return next(k for k in listed if k["id"] == key_id)["last_used_at"]


async def test_the_last_active_secret_key_cannot_be_revoked(platform: Platform) -> None:
    tenant = await platform.tenant(f"last-{uuid.uuid4().hex[:8]}")
    first = (await tenant.http.get("/v1/keys")).json()["data"][0]
    await mint(tenant, kind="publishable")
    response = await tenant.http.delete(f"/v1/keys/{first['id']}")
    assert (
        response.status_code == 409
        and "last active secret key" in response.json()["error"]["message"]
    )
    spare = await mint(tenant)
    assert (await tenant.http.delete(f"/v1/keys/{first['id']}")).status_code == 200
    async with client(platform, spare["api_key"]) as backend:
        assert (await backend.get("/v1/keys")).status_code == 200


async def test_keys_are_listed_newest_first_in_pages(platform: Platform) -> None:
    tenant = await platform.tenant(f"list-{uuid.uuid4().hex[:8]}")
    minted = [await mint(tenant, name=f"k{i}") for i in range(3)]
    first = (await tenant.http.get("/v1/keys", params={"limit": 2})).json()
    second = (
        await tenant.http.get("/v1/keys", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    names = [k["name"] for k in first["data"] + second["data"]]
    assert names == ["k2", "k1", "k0", "first key"] and second["next_cursor"] is None
    assert first["data"][0]["id"] == minted[2]["id"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"kind": "root"}, "/kind"),
        ({"name": "x" * 201}, "/name"),
        ({"skillpack": "Not A Slug"}, "/skillpack"),
        ({"allowed_skills": []}, "/allowed_skills"),
        ({"allowed_skills": ["echo", "Bad Name"]}, "/allowed_skills"),
        ({"allowed_skills": ["a/b/c/d"]}, "/allowed_skills"),
        ({"allowed_skills": [f"s{i}" for i in range(101)]}, "/allowed_skills"),
        ({"daily_cap_micros": 0}, "/daily_cap_micros"),
        ({"daily_cap_micros": 10**15 + 1}, "/daily_cap_micros"),
        ({"daily_cap_micros": 1.5}, "/daily_cap_micros"),
        ({"daily_cap_micros": "1000"}, "/daily_cap_micros"),
        ({"secret": "mine"}, "/secret"),
    ],
)
async def test_minting_refuses_bad_fields_with_a_pointer(
    platform: Platform, body: dict, pointer: str
) -> None:
    tenant = await platform.tenant(f"bad-{uuid.uuid4().hex[:8]}")
    response = await tenant.http.post("/v1/keys", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"][0]["pointer"] == pointer
    assert len((await tenant.http.get("/v1/keys")).json()["data"]) == 1  # nothing half-made


async def test_minting_accepts_the_edges(platform: Platform) -> None:
    tenant = await platform.tenant(f"edge-{uuid.uuid4().hex[:8]}")
    key = await mint(
        tenant,
        name="x" * 200,
        daily_cap_micros=1,
        allowed_skills=[f"s{i}" for i in range(100)],
        skillpack=str(uuid.uuid4()),
    )
    assert key["daily_cap_micros"] == 1 and len(key["allowed_skills"]) == 100
    assert (await mint(tenant, daily_cap_micros=10**15))["daily_cap_micros"] == 10**15
    assert (await mint(tenant, allowed_skills=["echo", "echo"]))["allowed_skills"] == ["echo"]


@pytest.mark.parametrize(
    ("method", "path", "status", "needle"),
    [
        ("GET", "/v1/keys?limit=0", 400, "limit=0 is out of range"),
        ("GET", "/v1/keys?limit=201", 400, "limit=201 is out of range"),
        ("GET", "/v1/keys?cursor=zzz", 400, "is not one this API returned"),
        ("DELETE", "/v1/keys/not-a-uuid", 404, "not found"),
        ("DELETE", "/v1/keys/7c1e0f4a-3b9d-4e52-8a61-2f0c9d4b5e17", 404, "not found"),
    ],
)
async def test_listing_and_revoking_validate_their_arguments(
    platform: Platform, method: str, path: str, status: int, needle: str
) -> None:
    tenant = await platform.tenant(f"args-{uuid.uuid4().hex[:8]}")
    response = await tenant.http.request(method, path)
    assert response.status_code == status and needle in response.json()["error"]["message"], (
        response.text
    )


async def test_another_workspaces_key_cannot_be_revoked(platform: Platform) -> None:
    owner = await platform.tenant(f"own-{uuid.uuid4().hex[:8]}")
    other = await platform.tenant(f"oth-{uuid.uuid4().hex[:8]}")
    key = await mint(owner)
    assert (await other.http.delete(f"/v1/keys/{key['id']}")).status_code == 404
    async with client(platform, key["api_key"]) as backend:
        assert (await backend.get("/v1/balance")).status_code == 200


async def test_a_key_mints_and_revokes_only_keys_with_equal_or_narrower_rights(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"narrow-{uuid.uuid4().hex[:8]}")
    narrow = await mint(
        tenant, name="ci", allowed_skills=["echo", "default/shout"], daily_cap_micros=1000
    )
    before = [k["id"] for k in (await tenant.http.get("/v1/keys?limit=200")).json()["data"]]
    async with client(platform, narrow["api_key"]) as ci:
        for body, pointers in (
            ({}, ["/allowed_skills", "/daily_cap_micros"]),
            ({"allowed_skills": ["echo"]}, ["/daily_cap_micros"]),
            ({"daily_cap_micros": 1000}, ["/allowed_skills"]),
            ({"allowed_skills": ["echo"], "daily_cap_micros": 1001}, ["/daily_cap_micros"]),
            ({"allowed_skills": ["echo", "shout"], "daily_cap_micros": 5}, ["/allowed_skills/1"]),
            (
                {"kind": "publishable", "allowed_skills": ["other/echo2"], "daily_cap_micros": 5},
                ["/allowed_skills/0"],
            ),
        ):
            refused = await ci.post("/v1/keys", json=body)
            assert refused.status_code == 403, (body, refused.text)
            error = refused.json()["error"]
            assert error["code"] == "forbidden" and "equal or narrower" in error["message"]
            assert [d["pointer"] for d in error["details"]] == pointers, body
        after = [k["id"] for k in (await tenant.http.get("/v1/keys?limit=200")).json()["data"]]
        assert after == before  # nothing was minted

        same = await ci.post(
            "/v1/keys",
            json={"allowed_skills": ["default/shout", "echo"], "daily_cap_micros": 1000},
        )
        assert same.status_code == 201, same.text
        narrower = await ci.post(
            "/v1/keys",
            json={
                "kind": "publishable",
                "allowed_skills": [f"{tenant.slug}/default/echo"],
                "daily_cap_micros": 1,
            },
        )
        assert narrower.status_code == 201, narrower.text
        assert narrower.json()["allowed_skills"] == [f"{tenant.slug}/default/echo"]

        # It cannot take away a wider key, only one it could have minted.
        wider = await ci.delete(f"/v1/keys/{before[-1]}")  # the workspace's first key
        assert wider.status_code == 403 and "wider rights" in wider.json()["error"]["message"]
        assert (await ci.delete(f"/v1/keys/{narrower.json()['id']}")).status_code == 200
    listed = {k["id"]: k for k in (await tenant.http.get("/v1/keys?limit=200")).json()["data"]}
    assert listed[before[-1]]["revoked_at"] is None


LINKING = {
    "skills/pointer/skill.yaml": "entrypoint: main.py:run\n",
    "skills/pointer/main.py": """
        def run(inputs):
            return {"file": {"drive_path": inputs["path"]}}
        """,
    "skills/maker/skill.yaml": "entrypoint: main.py:run\n",
    "skills/maker/main.py": """
        from pathlib import Path

        def run(inputs):
            target = Path("drive/made") / inputs["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("made by the job")
            return {"file": {"drive_path": f"made/{inputs['name']}"}}
        """,
    "skills/delegator/skill.yaml": "entrypoint: main.py:run\n",
    "skills/delegator/main.py": """
        from puras import subagent

        def run(inputs):
            return subagent.run("maker", {"name": inputs["name"]}, timeout=60)
        """,
}


async def test_a_publishable_key_uploads_only_new_files_into_its_own_folder(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"pubup-{uuid.uuid4().hex[:8]}")
    kept = await tenant.http.post(
        "/v1/drive/upload",
        files=[("file", ("p.txt", b"the owner's", "text/plain")), ("path", (None, "plans.txt"))],
    )
    assert kept.status_code == 201, kept.text
    key = await mint(tenant, kind="publishable")
    async with client(platform, key["api_key"]) as app:
        first = await app.post("/v1/drive/upload", files={"file": ("a.PNG", b"1", "image/png")})
        second = await app.post("/v1/drive/upload", files={"file": ("a.PNG", b"2", "image/png")})
        folder = f"uploads/pub-{key['id']}/"
        for answer in (first, second):
            assert answer.status_code == 201, answer.text
            path = answer.json()["drive_path"]
            assert path.startswith(folder) and path.endswith(".png")
            uuid.UUID(path[len(folder) : -len(".png")])
        assert first.json()["drive_path"] != second.json()["drive_path"]
        for chosen in ("plans.txt", f"{folder}{first.json()['drive_path'][len(folder) :]}", "x/"):
            refused = await app.post(
                "/v1/drive/upload",
                files=[("file", ("p.txt", b"overwritten", "text/plain")), ("path", (None, chosen))],
            )
            assert refused.status_code == 403, (chosen, refused.text)
            assert refused.json()["error"]["details"][0]["pointer"] == "/path"
    link = (await tenant.http.get("/v1/drive/sign", params={"path": "plans.txt"})).json()
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(link["signed_url"])).content == b"the owner's"
        own = await anonymous.get(first.json()["signed_url"])
        assert own.content == b"1"


async def test_result_links_reach_only_files_the_job_wrote_or_the_reader_could_open(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"links-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(LINKING)).status_code == 201
    await tenant.http.post(
        "/v1/drive/upload",
        files=[("file", ("p.txt", b"private", "text/plain")), ("path", (None, "private/p.txt"))],
    )
    key = await mint(tenant, kind="publishable")
    async with client(platform, key["api_key"]) as app:
        own = (
            await app.post("/v1/drive/upload", files={"file": ("u.txt", b"u", "text/plain")})
        ).json()["drive_path"]

        async def run(skill: str, inputs: dict[str, Any]) -> dict[str, Any]:
            answer = await app.post(
                "/v1/jobs?wait=true", json={"skill": skill, "inputs": inputs}, timeout=60
            )
            assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
            job: dict[str, Any] = answer.json()
            return job

        leaked = await run("pointer", {"path": "private/p.txt"})
        assert leaked["outputs"] == [{"drive_path": "private/p.txt", "signed_url": None}]
        again = (await app.get(f"/v1/jobs/{leaked['id']}")).json()
        assert again["outputs"][0]["signed_url"] is None
        mine = await run("pointer", {"path": own})
        assert mine["outputs"][0]["signed_url"]
        made = await run("maker", {"name": f"{uuid.uuid4().hex}.txt"})
        async with httpx.AsyncClient() as anonymous:
            fetched = await anonymous.get(made["outputs"][0]["signed_url"])
        assert fetched.content == b"made by the job"
        # A file a subagent of the job wrote is the job's too.
        delegated = await run("delegator", {"name": f"{uuid.uuid4().hex}.txt"})
        assert delegated["outputs"][0]["signed_url"], delegated
    # A secret key may sign any file of the workspace, so it sees every link.
    owner_view = (await tenant.http.get(f"/v1/jobs/{leaked['id']}")).json()
    assert owner_view["outputs"][0]["signed_url"]
