"""Fixtures of the agent runner's tests; the harness itself is in agent_harness.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from puras_common.bus import connect_nats
from puras_common.events import RunAgent
from puras_common.models import catalogue
from puras_common.payloads import PayloadStore
from puras_common.testing import Infra
from puras_sandbox import python_for

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from agent_harness import ROOT, UID, Harness, LocalDeployments
from puras_agent_runner.cancellation import Cancellations
from puras_agent_runner.fetching import Fetcher
from puras_agent_runner.providers import Providers
from puras_agent_runner.runner import AgentRunner
from puras_agent_runner.search import search_provider
from puras_agent_runner.settings import AgentRunnerSettings
from puras_agent_runner.testing.models import ModelStub, model_stub
from puras_agent_runner.testing.web import WebStub, web_stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def models() -> AsyncIterator[ModelStub]:
    async with model_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def web() -> AsyncIterator[WebStub]:
    async with web_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def harness(infra: Infra, models: ModelStub, web: WebStub) -> AsyncIterator[Harness]:
    if ROOT and python_for(UID, UID) is None:
        pytest.skip("no interpreter uid 65534 can run")
    base = Path(tempfile.mkdtemp(prefix="puras-agent-test-"))
    base.chmod(0o711)
    env = {k.removeprefix("PURAS_AGENT_RUNNER_").lower(): v for k, v in {**models.env(), **web.env()}.items()}
    settings = AgentRunnerSettings(
        cache_dir=base / "runner", drive_data_dir=base / "drive", fetch_allow_private=True, max_steps=50, **env
    )
    (base / "drive").mkdir(mode=0o711)
    nc = await connect_nats(infra.nats_url("agent-runner"), name="agent-runner-test")
    observer = await connect_nats(infra.nats_url(), name="agent-runner-test-observer")
    deployments = LocalDeployments(settings.cache_dir)
    providers = Providers(settings, catalogue())
    fetcher = Fetcher(allow_private=True, timeout_seconds=10)
    search = search_provider("brave", api_key=settings.search_api_key.get_secret_value(), base_url=settings.search_base_url)
    runner = AgentRunner(
        settings=settings, js=nc.jetstream(), deployments=deployments,
        payloads=PayloadStore("http://127.0.0.1:9", token="unused"), providers=providers, fetcher=fetcher,
        search=search, secrets=_Secrets(), cancellations=Cancellations(),
    )
    follower = asyncio.create_task(runner.cancellations.follow(nc.jetstream()))
    try:
        yield Harness(runner, deployments, models, web, observer, settings, base / "drive")
    finally:
        follower.cancel()
        await deployments.close()
        await providers.aclose()
        await fetcher.aclose()
        await nc.close()
        await observer.close()
        shutil.rmtree(base, ignore_errors=True)


class _Secrets:
    """Per-job secrets the tests choose (the platform's source is the deployments service)."""

    def __init__(self) -> None:
        self.values: dict[uuid.UUID, dict[str, str]] = {}

    async def for_job(self, command: RunAgent) -> dict[str, str]:
        return self.values.get(command.job_id, {})  # type: ignore[arg-type]


@pytest.fixture
def marker() -> str:
    """A unique string to put in a test's system prompt, so its scripted turns are its own."""
    return f"marker-{uuid.uuid4().hex}"
