"""Job tokens name their job, attempt and audience: they work only while that attempt runs, only
for what they were made for (the job's drive, media and subagent calls; a job's secrets only with
the runner's own token), and only in the job's workspace."""

from __future__ import annotations

import uuid

import httpx
import pytest
from puras_common import tokens
from puras_common.access import inbox_prefix
from puras_common.bus import connect_nats
from puras_common.secret_delivery import SecretDeliveryError, fetch_secrets
from puras_common.tokens import mint_job_token
from puras_testing import eventually
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT = {
    "skills/wait/skill.yaml": "entrypoint: main.py:run\n",
    "skills/wait/main.py": """
        import time

        def run(inputs):
            time.sleep(inputs["seconds"])
            return {"waited": inputs["seconds"]}
        """,
}


@pytest.fixture(scope="module")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"tokens-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    return tenant


def token_for(
    platform: Platform,
    tenant: Tenant,
    job_id: str,
    *,
    attempt: int = 1,
    audiences: tuple[str, ...] = tokens.JOB_AUDIENCES,
    skillpack_id: uuid.UUID | None = None,
) -> dict[str, str]:
    token = mint_job_token(
        platform.config.credentials.job_token_key,
        workspace_id=uuid.UUID(tenant.id),
        job_id=uuid.UUID(job_id),
        skillpack_id=skillpack_id or uuid.uuid4(),
        attempt=attempt,
        audiences=audiences,
        ttl_seconds=600,
    )
    return {"Authorization": f"Bearer {token}"}


async def running_job(tenant: Tenant, seconds: float = 20) -> str:
    response = await tenant.http.post(
        "/v1/jobs", json={"skill": "wait", "inputs": {"seconds": seconds}}
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]

    async def running() -> bool:
        return (await tenant.http.get(f"/v1/jobs/{job_id}")).json()["status"] == "running"

    await eventually(running, timeout=30, what="the job running")
    return job_id


async def test_a_token_works_while_its_attempt_runs_and_not_after(
    platform: Platform, tenant: Tenant
) -> None:
    job_id = await running_job(tenant, seconds=3)
    headers = token_for(platform, tenant, job_id)
    async with httpx.AsyncClient(base_url=platform.url, headers=headers) as job:
        assert (await job.get("/v1/drive/list")).status_code == 200
        stale = await job.get(
            "/v1/drive/list", headers=token_for(platform, tenant, job_id, attempt=0)
        )
        assert stale.status_code == 401
        assert "is on attempt 1" in stale.json()["error"]["message"]

        async def ended() -> bool:
            return (await tenant.http.get(f"/v1/jobs/{job_id}")).json()["status"] == "succeeded"

        await eventually(ended, timeout=60, what="the job's end")
        after = await job.get("/v1/drive/list")
        assert after.status_code == 401
        assert "has succeeded" in after.json()["error"]["message"]
        late = await job.post("/v1/subagents", json={"skill": "wait", "inputs": {"seconds": 0}})
        assert late.status_code in (401, 409)


async def test_a_token_opens_only_its_audiences(platform: Platform, tenant: Tenant) -> None:
    job_id = await running_job(tenant)
    async with httpx.AsyncClient(base_url=platform.url) as http:
        media_only = token_for(platform, tenant, job_id, audiences=(tokens.MEDIA,))
        refused = await http.get("/v1/drive/list", headers=media_only)
        assert refused.status_code == 401
        assert "does not open drive" in refused.json()["error"]["message"]
        drive_only = token_for(platform, tenant, job_id, audiences=(tokens.DRIVE,))
        body = {"model": "google/imagen-4", "inputs": {"prompt": "x"}}
        media = await http.post("/v1/media/generate", json=body, headers=drive_only)
        assert media.status_code == 401
        assert "does not open media" in media.json()["error"]["message"]
        sub = await http.post(
            "/v1/subagents", json={"skill": "wait", "inputs": {"seconds": 0}}, headers=drive_only
        )
        assert sub.status_code == 401
        # The token a runner asks for a job's secrets with opens nothing on the API.
        secrets_only = token_for(platform, tenant, job_id, audiences=(tokens.SECRETS,))
        assert (await http.get("/v1/drive/list", headers=secrets_only)).status_code == 401
        assert (await http.get("/v1/drive/list", headers=drive_only)).status_code == 200
    await tenant.http.post(f"/v1/jobs/{job_id}/cancel")


async def test_a_token_never_reaches_another_workspaces_drive(
    platform: Platform, tenant: Tenant
) -> None:
    other = await platform.tenant(f"tokens-other-{uuid.uuid4().hex[:6]}")
    secret = f"other-{uuid.uuid4().hex}.txt"
    stored = await other.http.post(
        "/v1/drive/upload",
        files=[("file", (secret, b"theirs", "text/plain")), ("path", (None, f"x/{secret}"))],
    )
    assert stored.status_code in (200, 201), stored.text
    job_id = await running_job(tenant)
    headers = token_for(platform, tenant, job_id)
    async with httpx.AsyncClient(base_url=platform.url, headers=headers) as job:
        for request in (
            job.build_request("GET", "/v1/drive/list", params={"workspace": other.slug}),
            job.build_request("GET", "/v1/drive/list", params={"prefix": f"{other.id}/x"}),
            job.build_request("GET", "/v1/drive/sign", params={"path": f"{other.id}/x/{secret}"}),
            job.build_request("GET", "/v1/drive/zip", params={"prefix": "x"}),
        ):
            response = await job.send(request)
            assert b"theirs" not in response.content, request.url
            if response.status_code == 200:  # its own workspace's answer, without their file
                assert secret not in response.text, request.url
            else:
                assert response.status_code in (400, 403, 404), request.url
    await tenant.http.post(f"/v1/jobs/{job_id}/cancel")


async def test_secrets_are_handed_out_only_for_an_attempt_the_scheduler_confirms(
    platform: Platform, tenant: Tenant
) -> None:
    nc = await connect_nats(
        platform.infra.nats_url("function-runner"),
        name="test-runner",
        inbox_prefix=inbox_prefix("function-runner"),
    )
    try:
        job_id = await running_job(tenant)

        packs = (await tenant.http.get("/v1/skillpacks")).json()["data"]
        pack = uuid.UUID(next(p["id"] for p in packs if p["slug"] == "default"))

        def secrets_token(job: str, attempt: int) -> str:
            return token_for(
                platform,
                tenant,
                job,
                attempt=attempt,
                audiences=(tokens.SECRETS,),
                skillpack_id=pack,
            )["Authorization"].removeprefix("Bearer ")

        async def fetched(job: str, attempt: int) -> dict[str, str]:
            return await fetch_secrets(
                nc, job_token=secrets_token(job, attempt), job_id=uuid.UUID(job)
            )

        # A skillpack without secrets guards nothing: any attempt's signed token gets none.
        assert await fetched(job_id, 2) == {}
        put = await tenant.http.put("/v1/secrets/GUARDED", json={"value": "kept"})
        assert put.status_code in (200, 201), put.text

        async def handed_out() -> bool:
            return await fetched(job_id, 1) == {"GUARDED": "kept"}

        await eventually(handed_out, what="the new secret, for the running attempt")
        with pytest.raises(SecretDeliveryError, match=r"attempt 2 of job .* is not running"):
            await fetched(job_id, 2)
        await tenant.http.post(f"/v1/jobs/{job_id}/cancel")
        done = await tenant.run("wait", {"seconds": 0})
        with pytest.raises(SecretDeliveryError, match="is not running"):
            await fetched(done["id"], 1)
    finally:
        await tenant.http.delete("/v1/secrets/GUARDED")
        await nc.close()
