"""Cross-service tests run against the whole platform: every service as its own process on the
session's real NATS JetStream and PostgreSQL. Model providers, the search API and the media
providers are local servers speaking their wire formats (``puras_agent_runner.testing``,
``puras_media.testing``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from puras_agent_runner.testing.models import ModelStub, model_stub
from puras_agent_runner.testing.web import WebStub, web_stub
from puras_cli.testing import Platform, start_platform
from puras_common.testing import Infra
from puras_media.testing.elevenlabs import ElevenLabsStub, elevenlabs_stub
from puras_media.testing.fal import FalStub, fal_stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def model_provider() -> AsyncIterator[ModelStub]:
    async with model_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def web_provider() -> AsyncIterator[WebStub]:
    async with web_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fal_provider() -> AsyncIterator[FalStub]:
    async with fal_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def eleven_provider() -> AsyncIterator[ElevenLabsStub]:
    async with elevenlabs_stub() as stub:
        yield stub


MEDIA_ENV = {"PURAS_MEDIA_POLL_SECONDS": "0.02", "PURAS_MEDIA_POLL_MAX_SECONDS": "0.1"}
SUBAGENT_LIMITS = {"PURAS_GATEWAY_SUBAGENT_MAX_DEPTH": "3", "PURAS_GATEWAY_SUBAGENT_MAX_CHILDREN": "4"}
"""Small bounds, so the tests reach them; the defaults are 5 and 32."""


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform(
    infra: Infra, model_provider: ModelStub, web_provider: WebStub, fal_provider: FalStub, eleven_provider: ElevenLabsStub
) -> AsyncIterator[Platform]:
    # A short lease, so a lost runner's job moves to another runner within seconds; a short SSE
    # ping interval, so tests see pings without waiting 15 s; a push waits 8 s for its
    # requirements.txt build before answering 202 "building".
    env = {
        "PURAS_FUNCTION_RUNNER_LEASE_SECONDS": "3",
        "PURAS_GATEWAY_SSE_PING_SECONDS": "1",
        "PURAS_GATEWAY_BUILD_WAIT_SECONDS": "8",
    }
    env |= {**model_provider.env(), **web_provider.env(), "PURAS_AGENT_RUNNER_SSRF_ALLOW": "127.0.0.0/8"}
    env |= {**fal_provider.env(), **eleven_provider.env(), **MEDIA_ENV, **SUBAGENT_LIMITS}
    async with start_platform(infra, extra_env=env) as running:
        yield running
