"""Browser apps on other origins: by default any origin may call the API with a bearer key
(no cookies are involved), and the headers an SDK sends and reads pass CORS."""

from __future__ import annotations

import uuid

import pytest
from puras_testing.platform import ECHO_PROJECT, Platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

ORIGIN = "http://app.localhost:5173"


async def test_any_origin_may_call_the_api_with_a_bearer_key(platform: Platform) -> None:
    tenant = await platform.tenant(f"cors-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(ECHO_PROJECT)).status_code == 201
    preflight = await tenant.http.options(
        "/v1/jobs",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, last-event-id",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "*"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key", "last-event-id"):
        assert header in allowed
    assert "access-control-allow-credentials" not in preflight.headers

    submitted = await tenant.http.post(
        "/v1/jobs", json={"skill": "echo", "inputs": {"text": "x"}}, headers={"Origin": ORIGIN}
    )
    assert submitted.status_code == 201
    assert submitted.headers["access-control-allow-origin"] == "*"
    exposed = submitted.headers["access-control-expose-headers"].lower()
    assert "location" in exposed and "x-puras-job-id" in exposed
