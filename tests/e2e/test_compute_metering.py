"""Compute is metered: each attempt of a job lands its CPU time and wall time in the job's usage,
as a ``puras/compute`` row priced at the operator's rates (zero unless set). A function job's is
its process's; an agent job's is its sandbox's (bash, tools) and the attempt's wall time."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from puras_testing import eventually
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

SPIN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"


def project(marker: str) -> dict[str, str]:
    return {
        "skills/spin/skill.yaml": "entrypoint: main.py:run\n",
        "skills/spin/main.py": """
            import time

            def run(inputs):
                end = time.process_time() + 0.4
                while time.process_time() < end:
                    pass
                return "spun"
            """,
        "skills/nap/skill.yaml": "entrypoint: main.py:run\n",
        "skills/nap/main.py": """
            import time

            def run(inputs):
                time.sleep(0.4)
                return "rested"
            """,
        "skills/think/skill.yaml": (
            "entrypoint: SKILL.md\n"
            "output_schema: {type: object, properties: {answer: {type: string}}, required: [answer]}\n"
        ),
        "skills/think/SKILL.md": f"Spin in bash, then call set_output. {marker}\n",
    }


async def compute_row(tenant: Tenant, job_id: str) -> dict[str, Any]:
    async def row() -> dict[str, Any] | None:
        usage = (await tenant.http.get(f"/v1/jobs/{job_id}/usage")).json()
        rows = [r for r in usage["data"] if r["kind"] == "compute"]
        return rows[0] if rows else None

    found: dict[str, Any] = await eventually(row, timeout=20, what="the job's compute usage")
    return found


async def test_a_function_jobs_cpu_and_wall_time_land_in_its_usage(
    platform: Platform, admin_db: asyncpg.Connection
) -> None:
    tenant = await platform.tenant(f"compute-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(project("unused"))).status_code == 201
    rows, ids = {}, {}
    for skill in ("spin", "nap"):
        done = await tenant.http.post(
            "/v1/jobs?wait=true&timeout=60", json={"skill": skill, "inputs": {}}
        )
        assert done.json()["status"] == "succeeded", done.text
        ids[skill] = done.json()["id"]
        rows[skill] = await compute_row(tenant, ids[skill])
    spin, nap = rows["spin"], rows["nap"]
    # The row rides on the job's end: the history has no usage event of its own for it, and
    # shows it as the end's compute, without what is internal.
    events = (await tenant.http.get(f"/v1/jobs/{ids['spin']}/events")).json()["events"]
    assert "usage" not in [e["type"] for e in events]
    (end,) = (e for e in events if e["type"] == "succeeded")
    assert end["payload"]["compute"]["cpu_ms"] == spin["cpu_ms"]
    assert {"ledger", "key_id"}.isdisjoint(end["payload"]["compute"])
    assert (spin["model"], spin["provider"], spin["unit"]) == (
        "puras/compute",
        "puras",
        "cpu_second",
    )
    # 0.4 s of CPU spun; the nap slept as long and used next to none.
    assert 400 <= spin["cpu_ms"] <= spin["wall_ms"] + 50 and spin["cpu_ms"] < 3_000
    assert spin["units"] == str(spin["cpu_ms"] / 1000).rstrip("0").rstrip(".")
    assert nap["cpu_ms"] < 200 and nap["wall_ms"] >= 400
    # Metered, and free: the operator has not priced compute on this platform.
    assert spin["billed_micros"] == nap["billed_micros"] == 0
    pricing = (await tenant.http.get("/v1/pricing")).json()
    assert pricing["compute"]["micros_per_cpu_second"] == 0
    # Free, it goes to no ledger: billing holds neither a usage row nor an entry for it.
    for table, column in (("usage", "usage_id"), ("ledger", "source_event_id")):
        held = await admin_db.fetchval(
            f"SELECT count(*) FROM billing.{table} WHERE {column} = ANY($1::uuid[])",
            [spin["id"], nap["id"]],
        )
        assert held == 0, table


async def test_an_agent_jobs_bash_cpu_lands_in_its_usage(
    platform: Platform, model_provider: ModelStub
) -> None:
    marker = f"compute-{uuid.uuid4().hex}"
    tenant = await platform.tenant(f"compute-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(project(marker))).status_code == 201
    model_provider.script(
        Reply(tool_calls=[Call("bash", {"command": f"python3 -c '{SPIN}'"})]),
        Reply(tool_calls=[Call("set_output", {"answer": "spun"})]),
        match=marker,
    )
    done = await tenant.http.post(
        "/v1/jobs?wait=true&timeout=60", json={"skill": "think", "inputs": {}}
    )
    assert done.json()["status"] == "succeeded", done.text
    row = await compute_row(tenant, done.json()["id"])
    assert 400 <= row["cpu_ms"] < 3_000
    assert row["wall_ms"] >= row["cpu_ms"]
    events = (await tenant.http.get(f"/v1/jobs/{done.json()['id']}/events")).json()["events"]
    shown = [e for e in events if e["type"] == "usage" and e["payload"]["kind"] == "compute"]
    assert shown == []  # the job's end carries it
    (end,) = (e for e in events if e["type"] == "succeeded")
    assert end["payload"]["compute"]["cpu_ms"] == row["cpu_ms"]
