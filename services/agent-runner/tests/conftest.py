"""Fixtures of the agent runner's tests; the harness itself is in agent_harness.py."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from puras.netguard import Policy
from puras_common.access import inbox_prefix
from puras_common.attempts import CancelWatch
from puras_common.bus import connect_nats
from puras_common.drive import DriveClient
from puras_common.events import RunAgent
from puras_common.payloads import PayloadStore
from puras_media import MediaService
from puras_pricing.models import catalogue
from puras_sandbox import python_for
from puras_testing import Infra
from puras_testing.drive import run_drive
from puras_testing.media.elevenlabs import ElevenLabsStub, elevenlabs_stub
from puras_testing.media.fal import FalStub, fal_stub

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from agent_harness import ROOT, UID, Harness, LocalDeployments
from puras_agent_runner.fetching import Fetcher
from puras_agent_runner.providers import Providers
from puras_agent_runner.runner import AgentRunner
from puras_agent_runner.search import search_provider
from puras_agent_runner.settings import AgentRunnerSettings
from puras_testing.models import ModelStub, model_stub
from puras_testing.web import WebStub, web_stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def models() -> AsyncIterator[ModelStub]:
    async with model_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def web() -> AsyncIterator[WebStub]:
    async with web_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fal() -> AsyncIterator[FalStub]:
    async with fal_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def eleven() -> AsyncIterator[ElevenLabsStub]:
    async with elevenlabs_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def harness(
    infra: Infra, models: ModelStub, web: WebStub, fal: FalStub, eleven: ElevenLabsStub
) -> AsyncIterator[Harness]:
    if ROOT and python_for(UID, UID) is None:
        pytest.skip("no interpreter uid 65534 can run")
    base = Path(tempfile.mkdtemp(prefix="puras-agent-test-"))
    base.chmod(0o711)
    (base / "drive").mkdir(mode=0o711)
    providers_env = {**models.env(), **web.env(), **fal.env(), **eleven.env()}
    env = {
        k.removeprefix("PURAS_AGENT_RUNNER_").removeprefix("PURAS_").lower(): v
        for k, v in providers_env.items()
    }
    async with (
        run_drive(infra.service_env("drive"), data_dir=str(base / "drive")) as drive,
        httpx.AsyncClient(timeout=60) as http,
    ):
        settings = AgentRunnerSettings(
            cache_dir=base / "runner",
            drive_url=drive.url,
            internal_token=drive.token,
            ssrf_allow="127.0.0.0/8",
            max_steps=50,
            media_poll_seconds=0.01,
            media_poll_max_seconds=0.05,
            **env,
        )
        nc = await connect_nats(
            infra.nats_url("agent-runner"),
            name="agent-runner-test",
            inbox_prefix=inbox_prefix("agent-runner"),
        )
        observer = await connect_nats(infra.nats_url(), name="agent-runner-test-observer")
        deployments = LocalDeployments(settings.cache_dir)
        providers = Providers(settings, catalogue())
        fetcher = Fetcher(policy=Policy.parse(settings.ssrf_allow), timeout_seconds=10)
        search = search_provider(
            "brave",
            api_key=settings.search_api_key.get_secret_value(),
            base_url=settings.search_base_url,
        )
        cancels = CancelWatch(nc)
        await cancels.start()
        runner = AgentRunner(
            settings=settings,
            js=nc.jetstream(),
            deployments=deployments,
            payloads=PayloadStore(drive.url, token=drive.token, client=http),
            providers=providers,
            fetcher=fetcher,
            search=search,
            secrets=_Secrets(),
            cancellations=cancels,
            drive=DriveClient(drive.url, token=drive.token, client=http),
            media=MediaService.from_settings(settings, http, producer="agent-runner"),
        )
        try:
            yield Harness(
                runner,
                deployments,
                models,
                web,
                observer,
                settings,
                base / "drive",
                drive=drive,
                fal=fal,
                eleven=eleven,
            )
        finally:
            await deployments.close()
            runner.drives.close()
            await providers.aclose()
            await fetcher.aclose()
            await nc.close()
            await observer.close()
            shutil.rmtree(base, ignore_errors=True)


class _Secrets:
    """Per-job secrets the tests choose (the platform's source is the deployments service)."""

    def __init__(self) -> None:
        self.values: dict[uuid.UUID, dict[str, str]] = {}

    async def for_job(self, command: RunAgent, token: str) -> dict[str, str]:
        return self.values.get(command.job_id, {})  # type: ignore[arg-type]


@pytest.fixture
def marker() -> str:
    """A unique string to put in a test's system prompt, so its scripted turns are its own."""
    return f"marker-{uuid.uuid4().hex}"
