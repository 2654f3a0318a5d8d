"""Retries of deterministic skills end to end: ``retries:`` in skill.yaml runs a failed job
again, each attempt in the job's events, until it succeeds or its attempts are spent; the policy
is checked at push, at its edges."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT = {
    "skills/flaky/skill.yaml": (
        "entrypoint: main.py:run\nretries: {max_attempts: 3, backoff_seconds: 0.2}\n"
    ),
    # Fails on its first two runs, succeeds on the third: the count is kept in the drive.
    "skills/flaky/main.py": """
        from pathlib import Path

        def run(inputs):
            counter = Path("drive") / inputs["counter"]
            runs = int(counter.read_text()) + 1 if counter.exists() else 1
            counter.write_text(str(runs))
            if runs < 3:
                raise RuntimeError(f"run {runs} failed")
            return {"runs": runs}
        """,
    "skills/broken/skill.yaml": (
        "entrypoint: main.py:run\nretries: {max_attempts: 2, backoff_seconds: 0}\n"
    ),
    "skills/broken/main.py": "def run(inputs):\n    raise KeyError('missing')\n",
}


async def events(tenant: Tenant, job_id: str) -> list[dict[str, Any]]:
    page = (await tenant.http.get(f"/v1/jobs/{job_id}/events")).json()
    return list(page["events"])


async def test_a_failing_skill_is_retried_until_it_succeeds_or_its_attempts_are_spent(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"retries-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    flaky = await tenant.run("flaky", {"counter": f"count-{uuid.uuid4().hex}.txt"}, timeout=60)
    assert flaky["status"] == "succeeded", flaky
    assert (flaky["result"], flaky["attempt"]) == ({"runs": 3}, 3)
    history = await events(tenant, flaky["id"])
    assert [e["payload"]["attempt"] for e in history if e["type"] == "started"] == [1, 2, 3]
    retrying = [e["payload"] for e in history if e["type"] == "retrying"]
    assert [r["attempt"] for r in retrying] == [2, 3]
    assert "attempt 1 of 3 failed (exception)" in retrying[0]["reason"]
    assert "run 1 failed" in retrying[0]["reason"]
    assert 0.1 <= retrying[0]["retry_in_seconds"] <= 0.2
    assert 0.2 <= retrying[1]["retry_in_seconds"] <= 0.4

    broken = await tenant.run("broken", {}, timeout=60)
    assert broken["status"] == "failed" and broken["attempt"] == 2, broken
    assert "KeyError" in broken["error"]
    types = [e["type"] for e in await events(tenant, broken["id"])]
    assert types.count("started") == 2 and types.count("retrying") == 1


@pytest.mark.parametrize(
    ("retries", "field"),
    [
        ("{max_attempts: 11}", "retries.max_attempts"),
        ("{max_attempts: 0}", "retries.max_attempts"),
        ("{max_attempts: 2.5}", "retries.max_attempts"),
        ("{backoff_seconds: 1}", "retries.max_attempts"),
        ("{max_attempts: 2, backoff_seconds: 601}", "retries.backoff_seconds"),
        ("{max_attempts: 2, backoff_seconds: -1}", "retries.backoff_seconds"),
        ("{max_attempts: 2, backoff_seconds: .nan}", "retries.backoff_seconds"),
        ("{max_attempts: 2, jitter: true}", "retries.jitter"),
        ("3", "retries"),
    ],
)
async def test_a_retry_policy_out_of_bounds_is_refused_at_push(
    platform: Platform, retries: str, field: str
) -> None:
    tenant = await platform.tenant(f"retrybad-{uuid.uuid4().hex[:8]}")
    response = await tenant.push(
        {
            "skills/s/skill.yaml": f"entrypoint: main.py:run\nretries: {retries}\n",
            "skills/s/main.py": "def run(inputs):\n    return {}\n",
        }
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_bundle" and field in error["message"], error


async def test_the_edges_of_a_retry_policy_are_accepted_and_agents_are_never_retried(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"retryedge-{uuid.uuid4().hex[:8]}")
    edges = await tenant.push(
        {
            "skills/s/skill.yaml": "entrypoint: main.py:run\nretries: {max_attempts: 10, backoff_seconds: 600}\n",
            "skills/s/main.py": "def run(inputs):\n    return {}\n",
            "skills/t/skill.yaml": "entrypoint: main.py:run\nretries: {max_attempts: 1, backoff_seconds: 0}\n",
            "skills/t/main.py": "def run(inputs):\n    return {}\n",
        }
    )
    assert edges.status_code == 201, edges.text
    agent = await tenant.push(
        {
            "skills/a/skill.yaml": "entrypoint: SKILL.md\nretries: {max_attempts: 2}\n",
            "skills/a/SKILL.md": "Answer.\n",
        }
    )
    assert agent.status_code == 400
    assert "only deterministic skills" in agent.json()["error"]["message"]
