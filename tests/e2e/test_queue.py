"""The queue as a client sees it: ``priority`` on submit, bounded at its documented edges."""

from __future__ import annotations

import uuid

import pytest
from puras_testing.platform import ECHO_PROJECT, Platform

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_priority_is_taken_within_its_range_and_refused_outside_it(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"queue-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(ECHO_PROJECT)).status_code == 201
    for priority in (-10, 10):
        job = await tenant.run("echo", {"text": "hi"}, priority=priority)
        assert job["status"] == "succeeded", job
    for priority in (-11, 11, 1.5, "high"):
        refused = await tenant.http.post(
            "/v1/jobs", json={"skill": "echo", "inputs": {"text": "hi"}, "priority": priority}
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["details"][0]["pointer"] == "/priority"
