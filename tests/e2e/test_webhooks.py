"""Webhooks against the running platform, verified by a local receiver with the
``standardwebhooks`` library: a delivery retried after a 500, every attempt in the log, a
redeliver, a rotated secret, a job's own ``webhook_url``, refusals by the SSRF guard, an endpoint
disabled (with an event) when it keeps failing, and one workspace never reaching another's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from puras_common.events import WebhookDisabled
from puras_testing import EventCollector, eventually
from puras_testing.platform import CHATTY_PROJECT, ECHO_PROJECT, Platform, Tenant
from puras_testing.webhooks import Received, Receiver, webhook_receiver
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"hooks-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push({**ECHO_PROJECT, **CHATTY_PROJECT})).status_code == 201
    return tenant


def verified(secret: str, request: Received) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


async def deliveries(tenant: Tenant, webhook_id: str) -> list[dict[str, Any]]:
    response = await tenant.http.get(f"/v1/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def test_signed_delivery_retried_after_a_500_logged_and_redelivered(
    tenant: Tenant, receiver: Receiver
) -> None:
    receiver.script["/hook"] = [500]
    created = await tenant.http.post(
        "/v1/webhooks",
        json={"url": f"{receiver.url}/hook", "events": ["job.succeeded", "job.failed"]},
    )
    assert created.status_code == 201, created.text
    webhook = created.json()
    secret = webhook["secret"]
    assert secret.startswith("whsec_") and created.headers["location"].endswith(webhook["id"])
    assert "secret" not in (await tenant.http.get(f"/v1/webhooks/{webhook['id']}")).json()

    job = await tenant.run("echo", {"text": "hooked"})
    first, second = await receiver.wait_for("/hook", 2)
    for request in (first, second):
        payload = verified(secret, request)
        assert payload["type"] == "job.succeeded"
        assert payload["data"]["id"] == job["id"] and payload["data"]["status"] == "succeeded"
        assert payload["data"]["result"] == {"echoed": "hooked"}
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 11).verify(second.body, second.headers)

    async def succeeded() -> dict[str, Any] | None:
        found = await deliveries(tenant, webhook["id"])
        return found[0] if found and found[0]["status"] == "succeeded" else None

    delivery = await eventually(succeeded, what="the delivery to succeed")
    assert delivery["id"] == first.headers["webhook-id"] and delivery["job_id"] == job["id"]
    assert [(a["n"], a["status_code"]) for a in delivery["attempts"]] == [(1, 500), (2, 200)]
    assert delivery["attempts"][0]["response_excerpt"] == "receiver says 500"
    assert delivery["attempts"][0]["error"] == "the endpoint answered HTTP 500"
    assert all(a["latency_ms"] >= 0 for a in delivery["attempts"])

    again = await tenant.http.post(
        f"/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver"
    )
    assert again.status_code == 202 and again.json()["status"] == "pending"
    (*_, third) = await receiver.wait_for("/hook", 3)
    assert third.headers["webhook-id"] == delivery["id"]
    assert verified(secret, third)["data"]["id"] == job["id"]

    # A rotated secret signs from now on; the old one still does, beside it, for a while.
    rotated = await tenant.http.post(f"/v1/webhooks/{webhook['id']}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["secret"] != secret
    assert rotated.json()["previous_secret_expires_at"] is not None
    failed = await tenant.run("boom", {})
    (*_, fourth) = await receiver.wait_for("/hook", 4)
    assert verified(rotated.json()["secret"], fourth)["data"]["id"] == failed["id"]
    assert verified(secret, fourth)["type"] == "job.failed"
    assert "KeyError" in verified(secret, fourth)["data"]["error"]


async def test_a_jobs_own_webhook_url_is_signed_and_the_guard_refuses_private_targets(
    tenant: Tenant, receiver: Receiver, platform: Platform
) -> None:
    job_url = await tenant.http.post("/v1/webhooks", json={"kind": "job_url"})
    assert job_url.status_code == 201, job_url.text
    secret = job_url.json()["secret"]
    assert (await tenant.http.post("/v1/webhooks", json={"kind": "job_url"})).status_code == 409

    job = await tenant.http.post(
        "/v1/jobs",
        json={"skill": "echo", "inputs": {"text": "mine"}, "webhook_url": f"{receiver.url}/job"},
    )
    assert job.status_code == 201, job.text
    (request,) = await receiver.wait_for("/job", 1)
    payload = verified(secret, request)
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job.json()["id"]
    assert payload["data"]["result"] == {"echoed": "mine"}

    minted = await tenant.http.post("/v1/keys", json={"kind": "publishable", "name": "app"})
    app = {"Authorization": f"Bearer {minted.json()['api_key']}"}
    refused = await tenant.http.post(
        "/v1/jobs",
        json={"skill": "echo", "inputs": {"text": "x"}, "webhook_url": f"{receiver.url}/job"},
        headers=app,
    )
    assert refused.status_code == 403 and "webhook_url" in refused.json()["error"]["message"]

    # The guard decides before any connection: at registration, and at each attempt.
    for url, why in (
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.0.0.7/hook", "private"),
        ("ftp://example.com/hook", "only http and https"),
        ("http://user:pw@127.0.0.1/hook", "credentials"),
    ):
        response = await tenant.http.post("/v1/webhooks", json={"url": url})
        assert response.status_code == 400, (url, response.text)
        assert why in response.json()["error"]["message"]
        assert response.json()["error"]["details"][0]["pointer"] == "/url"
    private = await tenant.http.post(
        "/v1/jobs",
        json={"skill": "echo", "inputs": {"text": "x"}, "webhook_url": "http://10.9.8.7/hook"},
    )
    assert private.status_code == 201

    async def gave_up() -> dict[str, Any] | None:
        for delivery in await deliveries(tenant, job_url.json()["id"]):
            if delivery["job_id"] == private.json()["id"] and delivery["status"] == "failed":
                return delivery
        return None

    delivery = await eventually(gave_up, timeout=30, what="the private target to be given up")
    assert len(delivery["attempts"]) == 4  # the first try and three retries
    assert all(a["status_code"] is None for a in delivery["attempts"])
    assert all("refused by the SSRF guard" in a["error"] for a in delivery["attempts"])
    assert "private" in delivery["attempts"][0]["error"]


async def test_an_endpoint_that_keeps_failing_is_disabled_with_an_event(
    tenant: Tenant, receiver: Receiver, nc: NATS
) -> None:
    receiver.always["/down"] = 503
    created = (
        await tenant.http.post(
            "/v1/webhooks", json={"url": f"{receiver.url}/down", "events": ["job.succeeded"]}
        )
    ).json()
    async with EventCollector(nc, f"webhook.{tenant.id}.disabled") as events:
        await tenant.run("echo", {"text": "nobody home"})

        async def disabled() -> dict[str, Any] | None:
            shown = (await tenant.http.get(f"/v1/webhooks/{created['id']}")).json()
            return shown if not shown["enabled"] else None

        shown = await eventually(disabled, timeout=30, what="the endpoint to be disabled")
        assert "3 attempts in a row failed" in shown["disabled_reason"]
        event = await events.wait_for(lambda e: isinstance(e, WebhookDisabled), timeout=10)
    assert event.payload.endpoint_id == uuid.UUID(created["id"])
    (delivery,) = await deliveries(tenant, created["id"])
    assert delivery["status"] == "failed" and "disabled" in delivery["last_error"]
    refused = await tenant.http.post(
        f"/v1/webhooks/{created['id']}/deliveries/{delivery['id']}/redeliver"
    )
    assert refused.status_code == 409

    receiver.always["/down"] = 200
    enabled = await tenant.http.patch(f"/v1/webhooks/{created['id']}", json={"enabled": True})
    assert enabled.json()["enabled"] is True and enabled.json()["consecutive_failures"] == 0
    # Counted before asking: the redelivery may reach the receiver before the 202 is read.
    count = len(receiver.at("/down"))
    again = await tenant.http.post(
        f"/v1/webhooks/{created['id']}/deliveries/{delivery['id']}/redeliver"
    )
    assert again.status_code == 202
    await receiver.wait_for("/down", count + 1)


async def test_the_limits_hold_at_their_edges(tenant: Tenant, receiver: Receiver) -> None:
    base = f"{receiver.url}/edge/"
    longest = base + "x" * (2048 - len(base))
    made = await tenant.http.post("/v1/webhooks", json={"url": longest, "description": "d" * 500})
    assert made.status_code == 201, made.text
    for body, pointer in (
        ({"url": longest + "x"}, "/url"),
        ({"url": base, "description": "d" * 501}, "/description"),
        ({"url": base, "events": []}, "/events"),
        ({"url": base, "events": ["job.started"]}, "/events/0"),
    ):
        refused = await tenant.http.post("/v1/webhooks", json=body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error"]["details"][0]["pointer"] == pointer
    for _ in range(2):  # three a workspace on the test platform
        assert (await tenant.http.post("/v1/webhooks", json={"url": base})).status_code == 201
    fourth = await tenant.http.post("/v1/webhooks", json={"url": base})
    assert fourth.status_code == 409 and "the limit is 3" in fourth.json()["error"]["message"]


async def test_another_workspace_reaches_none_of_it(
    tenant: Tenant, receiver: Receiver, platform: Platform
) -> None:
    mine = (await tenant.http.post("/v1/webhooks", json={"url": f"{receiver.url}/x"})).json()
    other = await platform.tenant(f"hooks-other-{uuid.uuid4().hex[:8]}")
    for method, path in (
        ("GET", f"/v1/webhooks/{mine['id']}"),
        ("PATCH", f"/v1/webhooks/{mine['id']}"),
        ("DELETE", f"/v1/webhooks/{mine['id']}"),
        ("POST", f"/v1/webhooks/{mine['id']}/rotate-secret"),
        ("GET", f"/v1/webhooks/{mine['id']}/deliveries"),
        ("POST", f"/v1/webhooks/{mine['id']}/deliveries/{uuid.uuid4()}/redeliver"),
    ):
        kwargs: dict[str, Any] = {"json": {"enabled": False}} if method == "PATCH" else {}
        response = await other.http.request(method, path, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
    assert (await other.http.get("/v1/webhooks")).json()["data"] == []
    assert (await tenant.http.get(f"/v1/webhooks/{mine['id']}")).json()["enabled"] is True
    deleted = await tenant.http.delete(f"/v1/webhooks/{mine['id']}")
    assert deleted.json() == {"id": mine["id"], "deleted": True}
    assert (await tenant.http.get(f"/v1/webhooks/{mine['id']}")).status_code == 404
