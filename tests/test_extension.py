"""The extension example (``examples/extensions/failed_jobs.py``) with a NATS user of its own:
it posts every failed job to a webhook and nothing else, and its user can do nothing but read
its one consumer: no publishing events, no other consumer, no wider filter."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import nats
import nats.errors
import nats.js.errors
import pytest
import pytest_asyncio
from nats.js.api import ConsumerConfig
from puras_cli.engines import NatsServer
from puras_common.access import Credentials, NatsUser, extension_permissions, inbox_prefix
from puras_common.bus import connect_nats, publish
from puras_common.events import JobFailed, JobSucceeded
from puras_common.events.jobs import FailedPayload, SucceededPayload
from puras_common.ids import new_id
from puras_common.streams import ensure_streams
from puras_testing import eventually
from puras_testing.stubs import serve_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = NatsUser(
    "failed-jobs",
    "ext-password-for-tests",
    extension_permissions("failed-jobs", stream="JOBS", filter_subject="job.*.failed"),
)


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "failed_jobs", ROOT / "examples" / "extensions" / "failed_jobs.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest_asyncio.fixture(loop_scope="session")
async def server() -> AsyncIterator[NatsServer]:
    creds = Credentials.generate()
    store = Path(tempfile.mkdtemp(prefix="puras-ext-"))
    running = NatsServer(store_dir=store, users=[*creds.nats_users(), EXTENSION])
    await running.start()
    try:
        admin = await connect_nats(running.url("admin"), name="setup")
        await ensure_streams(admin.jetstream())
        await admin.close()
        yield running
    finally:
        await running.stop()
        shutil.rmtree(store, ignore_errors=True)


async def test_every_failed_job_reaches_the_webhook_and_nothing_else(server: NatsServer) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({}, status_code=202)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    stop = asyncio.Event()
    ext = await nats.connect(server.url("failed-jobs"))
    scheduler = await connect_nats(
        server.url("scheduler"), name="scheduler", inbox_prefix=inbox_prefix("scheduler")
    )
    try:
        async with serve_app(app) as url, httpx.AsyncClient() as http:
            task = asyncio.create_task(
                example().forward(ext, webhook=f"{url}/hook", http=http, stop=stop)
            )
            await eventually(lambda: _consumer_exists(server), timeout=30, what="the consumer")
            ws, failed, fine = new_id(), new_id(), new_id()
            events = [
                JobSucceeded.new(
                    SucceededPayload(attempt=1, result={}, duration_ms=1),
                    producer="scheduler",
                    workspace_id=ws,
                    job_id=fine,
                ),
                JobFailed.new(
                    FailedPayload(attempt=2, reason="exception", error="ValueError: boom"),
                    producer="scheduler",
                    workspace_id=ws,
                    job_id=failed,
                ),
            ]
            await publish(scheduler.jetstream(), events)
            await eventually(lambda: received, timeout=30, what="the webhook post")
            stop.set()
            await task
    finally:
        await ext.close()
        await scheduler.close()
    assert len(received) == 1
    post = received[0]
    assert post["job_id"] == str(failed) and post["error"] == "ValueError: boom"
    assert post["reason"] == "exception" and post["attempt"] == 2


async def _consumer_exists(server: NatsServer) -> bool:
    admin = await connect_nats(server.url("admin"), name="check")
    try:
        await admin.jetstream().consumer_info("JOBS", "failed-jobs")
        return True
    except nats.js.errors.NotFoundError:
        return False
    finally:
        await admin.close()


async def test_the_extension_user_can_only_read_its_own_consumer(server: NatsServer) -> None:
    ext = await nats.connect(server.url("failed-jobs"))
    try:
        js = ext.jetstream(timeout=1)
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await js.publish("job.x.failed", b"{}")  # no events of its own
        wider = ConsumerConfig(
            name="failed-jobs", durable_name="failed-jobs", filter_subject="job.>"
        )
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await js.add_consumer("JOBS", wider)  # not the whole job history
        other = ConsumerConfig(
            name="gateway-jobs", durable_name="gateway-jobs", filter_subject="job.*.failed"
        )
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await js.add_consumer("JOBS", other)  # not another consumer
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await js.stream_info("LEDGER")
    finally:
        await ext.close()
