"""Each service's NATS user may publish only its own half of the catalogue and answer only its
own endpoints; the server refuses the rest."""

from __future__ import annotations

import asyncio
import uuid

import nats
import pytest
from nats.aio.client import Client as NATS
from puras_common.access import inbox_prefix
from puras_testing import Infra


async def connect_as(infra: Infra, service: str, errors: list[str]) -> NATS:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(
        infra.nats_url(service),
        error_cb=on_error,
        max_reconnect_attempts=0,
        inbox_prefix=inbox_prefix(service),
    )


@pytest.fixture
def enforced(infra: Infra) -> Infra:
    if not infra.enforces_permissions:
        pytest.skip("an external NATS (PURAS_TEST_NATS_URL) has its own users")
    return infra


@pytest.mark.parametrize(
    ("service", "allowed", "refused"),
    [
        ("gateway", "job.{id}.submitted", "ledger.{id}.posted"),
        ("gateway", "usage.{id}.recorded", "run.function"),  # media calls made for jobs
        ("scheduler", "run.agent.child", "usage.{id}.recorded"),
        ("gateway", "job.{id}.cancel_requested", "job.{id}.succeeded"),
        ("function-runner", "job.{id}.started", "job.{id}.submitted"),
        ("function-runner", "job.{id}.log", "job.{id}.succeeded"),
        ("scheduler", "job.{id}.succeeded", "job.{id}.started"),
        ("function-runner", "usage.{id}.recorded", "ledger.{id}.posted"),
        ("scheduler", "run.function", "balance.{id}.changed"),
        ("billing", "ledger.{id}.posted", "run.function"),
        ("deployments", "deployment.{id}.created", "workspace.{id}.credit_granted"),
    ],
)
async def test_services_publish_only_their_own_events(
    enforced: Infra, service: str, allowed: str, refused: str
) -> None:
    errors: list[str] = []
    nc = await connect_as(enforced, service, errors)
    try:
        js = nc.jetstream()
        ack = await js.publish(allowed.format(id=uuid.uuid4()), b"{}", timeout=5)
        assert ack.seq > 0
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(refused.format(id=uuid.uuid4()), b"{}", timeout=1)
        await asyncio.sleep(0.1)
        assert any("permissions violation" in e.lower() for e in errors), errors
    finally:
        await nc.close()


async def test_a_service_cannot_answer_another_services_endpoints(enforced: Infra) -> None:
    errors: list[str] = []
    nc = await connect_as(enforced, "function-runner", errors)
    try:

        async def answer(_msg: object) -> None:
            raise AssertionError("should never receive a request")

        await nc.subscribe("svc.deployments.secrets", cb=answer)
        await nc.flush()
        await asyncio.sleep(0.2)
        assert any(
            "permissions violation" in e.lower() and "subscription" in e.lower() for e in errors
        ), errors
    finally:
        await nc.close()


@pytest.mark.parametrize("service", ["gateway", "billing", "scheduler", "drive"])
async def test_only_runners_may_ask_for_a_jobs_secrets(enforced: Infra, service: str) -> None:
    errors: list[str] = []
    nc = await connect_as(enforced, service, errors)
    try:
        await nc.publish("svc.deployments.secrets", b"{}")
        await nc.flush()
        await asyncio.sleep(0.2)
        assert any(
            "permissions violation" in e.lower() and "publish" in e.lower() for e in errors
        ), errors
    finally:
        await nc.close()
    runner_errors: list[str] = []
    runner = await connect_as(enforced, "function-runner", runner_errors)
    try:
        await runner.publish("svc.deployments.secrets", b"{}")
        await runner.flush()
        await asyncio.sleep(0.2)
        assert runner_errors == []
    finally:
        await runner.close()


async def test_streams_cannot_be_deleted_by_a_service(enforced: Infra) -> None:
    nc = await connect_as(enforced, "gateway", [])
    try:
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await nc.jetstream().delete_stream("JOBS")
    finally:
        await nc.close()
    admin = await nats.connect(enforced.nats_url())
    try:
        assert (await admin.jetstream().stream_info("JOBS")).config.name == "JOBS"
    finally:
        await admin.close()
