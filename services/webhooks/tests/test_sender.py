"""The sender on the service's own tables, against a real receiver on loopback: a sender whose
lease ran out cannot overwrite what the next holder decided, every attempt is logged, and a
delivery that keeps failing is given up once its schedule runs out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from puras_common.migrate import service_migrations
from puras_common.ssrf import Policy
from puras_testing import Infra, Scratch, scratch_schema
from puras_testing.webhooks import Receiver, webhook_receiver
from puras_webhooks import sender as sender_module
from puras_webhooks.sender import Sender
from puras_webhooks.settings import WebhooksSettings
from puras_webhooks.signing import new_secret


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("webhooks", sender_module.__file__)
    ) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as running:
        yield running


async def sender(db: Scratch, http: httpx.AsyncClient) -> Sender:
    settings = WebhooksSettings(retry_schedule="0.01,0.01", lease_seconds=30)
    return Sender(db.outbox, http, settings=settings, policy=Policy.parse("127.0.0.0/8"))


async def delivery(db: Scratch, url: str) -> uuid.UUID:
    endpoint_id, delivery_id = uuid.uuid4(), uuid.uuid4()
    await db.pool.execute(
        """INSERT INTO endpoints (id, workspace_id, kind, url, events, secret)
           VALUES ($1, $2, 'endpoint', $3, '{job.succeeded}', $4)""",
        endpoint_id,
        uuid.uuid4(),
        url,
        new_secret(),
    )
    await db.pool.execute(
        """INSERT INTO deliveries (id, workspace_id, endpoint_id, url, event_type,
                                   source_event_id, payload)
           VALUES ($1, $2, $3, $4, 'job.succeeded', $5, $6)""",
        delivery_id,
        uuid.uuid4(),
        endpoint_id,
        url,
        uuid.uuid4(),
        {"type": "job.succeeded", "data": {}},
    )
    return delivery_id


async def test_a_sender_past_its_lease_cannot_overwrite_the_next_holder(
    db: Scratch, receiver: Receiver
) -> None:
    receiver.always["/slow"] = 500
    delivery_id = await delivery(db, f"{receiver.url}/slow")
    async with httpx.AsyncClient() as http:
        late, next_holder = await sender(db, http), await sender(db, http)
        (stale,) = await late.claim(10)
        stale_outcome = await late.send(stale)
        # The late sender stalls past its lease; the delivery is due again and taken over.
        await db.pool.execute(
            "UPDATE deliveries SET next_attempt_at = now() WHERE id = $1", delivery_id
        )
        receiver.always["/slow"] = 200
        (fresh,) = await next_holder.claim(10)
        assert (stale.n, fresh.n) == (1, 2) and stale.token != fresh.token
        await next_holder.record(fresh, await next_holder.send(fresh))
        await late.record(stale, stale_outcome)
    row = await db.pool.fetchrow("SELECT status, tries FROM deliveries WHERE id = $1", delivery_id)
    assert (row["status"], row["tries"]) == ("succeeded", 0)
    attempts = await db.pool.fetch(
        "SELECT n, status_code FROM attempts WHERE delivery_id = $1 ORDER BY n", delivery_id
    )
    assert [(a["n"], a["status_code"]) for a in attempts] == [(1, 500), (2, 200)]


async def test_a_delivery_is_given_up_when_its_schedule_runs_out(
    db: Scratch, receiver: Receiver
) -> None:
    receiver.always["/never"] = 502
    delivery_id = await delivery(db, f"{receiver.url}/never")
    async with httpx.AsyncClient() as http:
        worker = await sender(db, http)
        for _ in range(3):  # the first try and two retries
            await db.pool.execute(
                "UPDATE deliveries SET next_attempt_at = now() WHERE id = $1", delivery_id
            )
            (claim,) = await worker.claim(10)
            await worker.record(claim, await worker.send(claim))
        assert await worker.claim(10) == []
    row = await db.pool.fetchrow(
        "SELECT status, last_error FROM deliveries WHERE id = $1", delivery_id
    )
    assert row["status"] == "failed"
    assert row["last_error"] == "gave up after 3 attempts: the endpoint answered HTTP 502"
    assert len(receiver.at("/never")) == 3
