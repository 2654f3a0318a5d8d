"""Projections are disposable: dropping the gateway's job read model and replaying the JOBS
stream rebuilds identical rows."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from nats.js import JetStreamContext
from puras_common import streams
from puras_common.bus import ConsumerSpec, reset_consumer
from puras_testing import eventually
from puras_testing.platform import ECHO_PROJECT, Platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT = {
    **ECHO_PROJECT,
    "skills/fail/skill.yaml": "entrypoint: main.py:run\n",
    "skills/fail/main.py": "def run(inputs):\n    print('about to fail')\n    raise RuntimeError('no')\n",
}

# Other tests share the platform and may still have jobs in flight: compare this test's rows.
SNAPSHOT_JOBS = "SELECT * FROM gateway.jobs WHERE workspace_id = $1 ORDER BY id"
SNAPSHOT_EVENTS = """SELECT e.* FROM gateway.job_events e JOIN gateway.jobs j ON j.id = e.job_id
                     WHERE j.workspace_id = $1 ORDER BY e.seq"""


async def test_replaying_jobs_rebuilds_identical_rows(
    platform: Platform, admin_db: asyncpg.Connection, js: JetStreamContext
) -> None:
    tenant = await platform.tenant(f"rebuild-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    for i in range(5):
        assert (await tenant.run("echo", {"text": f"t{i}"}))["status"] == "succeeded"
    assert (await tenant.run("fail", {}))["status"] == "failed"
    await tenant.http.post("/v1/jobs", json={"skill": "echo", "inputs": {"text": "last"}})

    workspace = uuid.UUID(tenant.id)

    async def settled() -> bool:
        return not await admin_db.fetchval(
            "SELECT count(*) FROM gateway.jobs WHERE workspace_id = $1 AND status NOT IN ('succeeded','failed','cancelled')",
            workspace,
        )

    await eventually(settled, timeout=30, what="every job to finish")
    jobs_before = [dict(r) for r in await admin_db.fetch(SNAPSHOT_JOBS, workspace)]
    events_before = [dict(r) for r in await admin_db.fetch(SNAPSHOT_EVENTS, workspace)]
    assert len(jobs_before) >= 7 and len(events_before) >= 3 * 7

    await platform.stop_service("gateway")
    try:
        await admin_db.execute("TRUNCATE gateway.jobs, gateway.job_events")
        await admin_db.execute("DELETE FROM gateway.inbox WHERE consumer = 'gateway-jobs'")
        await reset_consumer(js, ConsumerSpec(streams.JOBS, "gateway-jobs", ("job.>",)))
        assert await admin_db.fetchval("SELECT count(*) FROM gateway.jobs") == 0
    finally:
        await platform.start_service("gateway")

    async def rebuilt() -> bool:
        return len(await admin_db.fetch(SNAPSHOT_EVENTS, workspace)) >= len(events_before)

    await eventually(rebuilt, timeout=60, what="the replay")
    assert [dict(r) for r in await admin_db.fetch(SNAPSHOT_EVENTS, workspace)] == events_before
    assert [dict(r) for r in await admin_db.fetch(SNAPSHOT_JOBS, workspace)] == jobs_before
