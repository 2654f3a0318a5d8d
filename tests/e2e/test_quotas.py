"""Quotas, each answered at its edge on a platform of its own whose limits are small: a key's
request rate (429, ``Retry-After`` and the RateLimit fields), its open event streams, a
workspace's drive bytes (507 naming the quota, and ``GET /v1/drive/quota``), a job's log bytes
(truncated, with a marker event) and the total subagents under one root job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from nats.js.api import DiscardPolicy
from puras_common.bus import connect_nats
from puras_testing import eventually, start_infra
from puras_testing.platform import Platform, Tenant, start_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

BURST = 60
PER_SECOND = "0.1"
"""One request back every 10 s: a run of requests meets the burst's edge exactly."""
STREAMS = 2
QUOTA = 10_000
LOG_BYTES = 2048
DESCENDANTS = 20

PROJECT: dict[str, str] = {
    "skills/sleeper/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 60\n",
    "skills/sleeper/main.py": """
        import time
        def run(inputs):
            time.sleep(inputs.get("seconds", 20))
            return {"slept": True}
        """,
    "skills/chatty/skill.yaml": "entrypoint: main.py:run\n",
    "skills/chatty/main.py": """
        def run(inputs):
            for i in range(inputs["lines"]):
                print(f"{i:04d} " + "x" * 95, flush=True)
            return {"printed": inputs["lines"]}
        """,
    "skills/swarm/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 120\n",
    "skills/swarm/main.py": """
        from puras import PurasAPIError, _jobapi
        def run(inputs):
            # A fan-out aiming at 1,000 descendants: each child is queued, none waited for.
            for started in range(1000):
                try:
                    _jobapi.call("POST", "/v1/subagents", {"target": "leaf", "inputs": {"n": started}})
                except PurasAPIError as exc:
                    return {"started": started, "status": exc.status, "message": exc.message}
            return {"started": 1000}
        """,
    "skills/tree/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 120\n",
    "skills/tree/main.py": """
        from puras import PurasAPIError, subagent
        def run(inputs):
            # Two levels: each child runs swarm, whose leaves count against this root too.
            out = []
            for _ in range(inputs["children"]):
                try:
                    out.append(subagent.run("swarm", {}, timeout=100))
                except PurasAPIError as exc:
                    out.append({"refused": exc.status, "message": exc.message})
            return out
        """,
    "skills/leaf/skill.yaml": "entrypoint: main.py:run\n",
    "skills/leaf/main.py": "def run(inputs):\n    return inputs\n",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited() -> AsyncIterator[Platform]:
    """A platform of its own (own NATS and PostgreSQL) with every quota small."""
    env = {
        "PURAS_GATEWAY_RATE_LIMIT_BURST": str(BURST),
        "PURAS_GATEWAY_RATE_LIMIT_PER_SECOND": PER_SECOND,
        "PURAS_GATEWAY_MAX_STREAMS_PER_KEY": str(STREAMS),
        "PURAS_GATEWAY_SSE_PING_SECONDS": "1",
        "PURAS_DRIVE_QUOTA_BYTES": str(QUOTA),
        "PURAS_FUNCTION_RUNNER_MAX_LOG_BYTES": str(LOG_BYTES),
        "PURAS_GATEWAY_SUBAGENT_MAX_CHILDREN": "1000",
        "PURAS_GATEWAY_SUBAGENT_MAX_DESCENDANTS": str(DESCENDANTS),
        "PURAS_JOBS_STREAM_MAX_AGE_DAYS": "7",
        "PURAS_JOBS_STREAM_MAX_BYTES": str(256 * 1024**2),
        "PURAS_JOBS_STREAM_MAX_MSGS": "5000000",
    }
    async with start_infra(role_prefix="puras_quota") as infra:
        async with start_platform(infra, extra_env=env) as running:
            yield running


async def tenant_with_project(platform: Platform, name: str) -> Tenant:
    tenant = await platform.tenant(f"{name}-{uuid.uuid4().hex[:6]}")
    pushed = await tenant.push(PROJECT)
    assert pushed.status_code == 201, pushed.text
    return tenant


async def test_a_keys_request_rate_is_a_token_bucket(limited: Platform) -> None:
    tenant = await limited.tenant(f"rate-{uuid.uuid4().hex[:6]}")  # its key is unused
    answers = [await tenant.http.get("/v1/keys") for _ in range(BURST + 2)]
    allowed, refused = answers[:BURST], answers[BURST:]
    assert all(a.status_code == 200 for a in allowed), [a.status_code for a in allowed]
    assert allowed[0].headers["RateLimit-Policy"] == f'"burst";q={BURST};w={BURST * 10}'
    assert allowed[-1].headers["RateLimit"].startswith('"burst";r=0;t=')
    assert [a.status_code for a in refused] == [429, 429]
    error = refused[0].json()["error"]
    assert error["code"] == "rate_limited" and "PURAS_GATEWAY_RATE_LIMIT_BURST" in error["message"]
    assert error["details"]["quota"] == "requests"
    assert 1 <= int(refused[0].headers["Retry-After"]) <= 10
    assert refused[0].headers["RateLimit"].startswith('"burst";r=0;')
    # Another key is not held back by this one.
    other = await limited.tenant(f"rate-other-{uuid.uuid4().hex[:6]}")
    assert (await other.http.get("/v1/keys")).status_code == 200
    # The bucket refills: after Retry-After, the key is served again.
    await asyncio.sleep(int(refused[-1].headers["Retry-After"]))
    assert (await tenant.http.get("/v1/keys")).status_code == 200


async def test_the_public_quote_is_limited_by_address(limited: Platform) -> None:
    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as anonymous:
        body = {"model": "claude/haiku-4-5", "input_tokens": 1000, "output_tokens": 10}
        answers = [await anonymous.post("/v1/pricing/quote", json=body) for _ in range(BURST + 1)]
    assert all(a.status_code == 200 for a in answers[:BURST]), answers[-2].text
    assert answers[BURST - 1].headers["RateLimit"].startswith('"burst";r=0;')
    refused = answers[BURST]
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["message"].startswith(
        f"too many requests: this address may make {BURST} requests at once"
    )
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    # A key's requests are counted apart from its address's.
    tenant = await limited.tenant(f"quote-{uuid.uuid4().hex[:6]}")
    assert (await tenant.http.get("/v1/keys")).status_code == 200


async def test_open_event_streams_per_key_are_bounded(limited: Platform) -> None:
    tenant = await tenant_with_project(limited, "streams")
    async with httpx.AsyncClient(
        base_url=limited.url, headers=tenant.http.headers, timeout=60
    ) as http:
        opened: list[httpx.Response] = []
        contexts = []
        for _ in range(STREAMS):
            context = http.stream(
                "POST", "/v1/jobs?stream=true", json={"skill": "sleeper", "inputs": {}}
            )
            response = await context.__aenter__()
            assert response.status_code == 200
            contexts.append(context)
            opened.append(response)
        jobs_before = (await tenant.http.get("/v1/jobs")).json()["data"]
        refused = await tenant.http.post(
            "/v1/jobs?stream=true", json={"skill": "sleeper", "inputs": {}}
        )
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and error["details"]["quota"] == "streams"
        assert "PURAS_GATEWAY_MAX_STREAMS_PER_KEY" in error["message"]
        assert refused.headers["Retry-After"] == "1"
        # A refused stream leaves no job behind.
        assert len((await tenant.http.get("/v1/jobs")).json()["data"]) == len(jobs_before)
        first_job = opened[0].headers["X-Puras-Job-Id"]
        await contexts[0].__aexit__(None, None, None)

        async def reopened() -> httpx.Response | None:
            async with http.stream("GET", f"/v1/jobs/{first_job}/stream") as again:
                return again if again.status_code == 200 else None

        # Closing a stream gives its place back.
        await eventually(reopened, timeout=10, interval=0.5, what="a freed stream slot")
        await contexts[1].__aexit__(None, None, None)
        for response in opened:
            await tenant.http.post(f"/v1/jobs/{response.headers['X-Puras-Job-Id']}/cancel")


async def upload(tenant: Tenant, size: int, path: str) -> httpx.Response:
    return await tenant.http.post(
        "/v1/drive/upload",
        files={"file": ("f.bin", b"q" * size, "application/octet-stream")},
        data={"path": path},
    )


async def usage(tenant: Tenant) -> dict[str, Any]:
    response = await tenant.http.get("/v1/drive/quota")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_workspaces_drive_is_bounded_by_its_quota(limited: Platform) -> None:
    tenant = await limited.tenant(f"drive-{uuid.uuid4().hex[:6]}")
    assert await usage(tenant) == {"used_bytes": 0, "limit_bytes": QUOTA, "files": 0}
    assert (await upload(tenant, 6000, "a.bin")).status_code == 201
    assert await usage(tenant) == {"used_bytes": 6000, "limit_bytes": QUOTA, "files": 1}
    too_much = await upload(tenant, QUOTA - 6000 + 1, "b.bin")
    assert too_much.status_code == 507, too_much.text
    error = too_much.json()["error"]
    assert error["code"] == "quota_exceeded" and "PURAS_DRIVE_QUOTA_BYTES" in error["message"]
    assert error["details"] == {"quota": "drive_bytes", "used_bytes": 6000, "limit_bytes": QUOTA}
    # Exactly up to the quota is allowed; then not one byte more.
    assert (await upload(tenant, QUOTA - 6000, "b.bin")).status_code == 201
    full = await upload(tenant, 1, "c.bin")
    assert full.status_code == 507 and "its quota is 10000 bytes" in full.json()["error"]["message"]
    assert (await usage(tenant))["used_bytes"] == QUOTA
    # Deleting makes room again; another workspace has its own quota.
    deleted = await tenant.http.delete("/v1/drive/object", params={"path": "a.bin"})
    assert deleted.json() == {"deleted": 1}
    assert (await upload(tenant, 1, "c.bin")).status_code == 201
    other = await limited.tenant(f"drive-other-{uuid.uuid4().hex[:6]}")
    assert (await usage(other))["used_bytes"] == 0


async def log_events(tenant: Tenant, job_id: str) -> list[dict[str, Any]]:
    response = await tenant.http.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000})
    return [e for e in response.json()["events"] if e["type"] == "log"]


async def test_a_jobs_log_is_truncated_at_its_limit_with_a_marker(limited: Platform) -> None:
    tenant = await tenant_with_project(limited, "logs")
    # 100 lines of 100 characters: ten kilobytes printed, two kept.
    loud = await tenant.run("chatty", {"lines": 100})
    assert loud["status"] == "succeeded" and loud["result"] == {"printed": 100}
    logs = await log_events(tenant, loud["id"])
    kept, marker = logs[:-1], logs[-1]
    assert marker["payload"]["truncated"] is True
    assert str(LOG_BYTES) in marker["payload"]["text"]
    assert "PURAS_FUNCTION_RUNNER_MAX_LOG_BYTES" in marker["payload"]["text"]
    kept_bytes = sum(len(e["payload"]["text"].encode()) for e in kept)
    assert LOG_BYTES - 101 < kept_bytes <= LOG_BYTES
    assert kept[0]["payload"]["text"].startswith("0000 ")
    assert not any(e["payload"].get("truncated") for e in kept)
    # Under the limit, everything is kept and there is no marker.
    quiet = await tenant.run("chatty", {"lines": 10})
    logs = await log_events(tenant, quiet["id"])
    assert not any(e["payload"].get("truncated") for e in logs)
    assert sum(e["payload"]["text"].count("\n") + 1 for e in logs) == 10


async def test_a_fan_out_of_a_thousand_descendants_is_refused_at_the_tree_limit(
    limited: Platform,
) -> None:
    tenant = await tenant_with_project(limited, "swarm")
    job = await tenant.run("swarm", {}, timeout=60)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["started"] == DESCENDANTS and result["status"] == 400
    assert f"the limit is {DESCENDANTS}" in result["message"]
    assert "PURAS_GATEWAY_SUBAGENT_MAX_DESCENDANTS" in result["message"]
    children = (await tenant.http.get("/v1/jobs", params={"limit": 200})).json()["data"]
    assert sum(1 for c in children if c["parent_job_id"] == job["id"]) == DESCENDANTS


async def test_the_jobs_stream_is_bounded_as_configured(limited: Platform) -> None:
    nc = await connect_nats(limited.infra.nats_url(), name="test-jobs-stream")
    try:
        config = (await nc.jetstream().stream_info("JOBS")).config
    finally:
        await nc.close()
    assert config.max_age == 7 * 24 * 3600
    assert config.max_bytes == 256 * 1024**2
    assert config.max_msgs == 5_000_000
    assert config.max_msg_size == 1024 * 1024
    assert config.discard == DiscardPolicy.OLD


async def test_grandchildren_count_against_the_root_of_their_tree(limited: Platform) -> None:
    tenant = await tenant_with_project(limited, "tree")
    job = await tenant.run("tree", {"children": 3}, timeout=60)
    assert job["status"] == "succeeded", job
    first, second, third = job["result"]
    # The first child is one of the tree's subagents; its leaves fill the rest.
    assert first["started"] == DESCENDANTS - 1 and first["status"] == 400
    assert f"the tree of job {job['id']}" in first["message"]
    for refused in (second, third):
        assert refused["refused"] == 400 and f"the limit is {DESCENDANTS}" in refused["message"]
