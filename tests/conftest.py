"""Cross-service tests run against the whole platform: every service as its own process on the
session's real NATS JetStream and PostgreSQL. Model providers, the search API and the media
providers are local servers speaking their wire formats (``puras_testing``,
``puras_testing.media``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from puras_cli.engines import free_port
from puras_testing import Infra
from puras_testing.media.elevenlabs import ElevenLabsStub, elevenlabs_stub
from puras_testing.media.fal import FalStub, fal_stub
from puras_testing.models import ModelStub, model_stub
from puras_testing.platform import Platform, start_platform
from puras_testing.web import WebStub, web_stub
from puras_testing.wheels import INDEX_PORT


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
SUBAGENT_LIMITS = {
    "PURAS_GATEWAY_SUBAGENT_MAX_DEPTH": "3",
    "PURAS_GATEWAY_SUBAGENT_MAX_CHILDREN": "4",
}
"""Small bounds, so the tests reach them; the defaults are 5 and 32."""
WEBHOOKS_ENV = {
    "PURAS_WEBHOOKS_SSRF_ALLOW": "127.0.0.0/8",
    "PURAS_WEBHOOKS_RETRY_SCHEDULE": "0.3,0.3,0.3",
    "PURAS_WEBHOOKS_DISABLE_AFTER_FAILURES": "3",
    "PURAS_WEBHOOKS_DISABLE_AFTER_SECONDS": "0",
    "PURAS_WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE": "3",
    "PURAS_GATEWAY_MAX_SCHEDULES_PER_WORKSPACE": "3",
}
"""Receivers on loopback; retries a fraction of a second apart (the default schedule spans a
day); an endpoint disabled after three failures in a row; three endpoints and three schedules
a workspace, so the tests reach the limits (the defaults are 20 and 100)."""


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def egress_test_port() -> int:
    """A loopback port the runners' egress proxies let networked jobs reach: tests serve an
    "allowed destination" on it (production refuses such an allowlist)."""
    return free_port()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform(
    infra: Infra,
    egress_test_port: int,
    model_provider: ModelStub,
    web_provider: WebStub,
    fal_provider: FalStub,
    eleven_provider: ElevenLabsStub,
) -> AsyncIterator[Platform]:
    # A short lease, so a lost runner's job moves to another runner within seconds; a short SSE
    # ping interval, so tests see pings without waiting 15 s; a push waits 8 s for its
    # requirements.txt build before answering 202 "building".
    env = {
        "PURAS_FUNCTION_RUNNER_LEASE_SECONDS": "3",
        "PURAS_GATEWAY_SSE_PING_SECONDS": "1",
        "PURAS_GATEWAY_BUILD_WAIT_SECONDS": "8",
    }
    env |= {
        **model_provider.env(),
        **web_provider.env(),
        "PURAS_AGENT_RUNNER_SSRF_ALLOW": "127.0.0.0/8",
    }
    env |= {**fal_provider.env(), **eleven_provider.env(), **MEDIA_ENV, **SUBAGENT_LIMITS}
    env |= WEBHOOKS_ENV
    env |= {
        f"PURAS_{runner}_RUNNER_EGRESS_TEST_ALLOW": f"127.0.0.1:{egress_test_port}"
        for runner in ("FUNCTION", "AGENT")
    }
    env["PURAS_DEPLOYMENTS_EGRESS_TEST_ALLOW"] = f"127.0.0.1:{INDEX_PORT}"  # builds' index
    # Fault tests poll hundreds of jobs with one key while services restart; the per-key rate
    # limit is shown at its edges on a platform of its own (tests/e2e/test_quotas.py).
    env |= {"PURAS_GATEWAY_RATE_LIMIT_BURST": "5000", "PURAS_GATEWAY_RATE_LIMIT_PER_SECOND": "2000"}
    async with start_platform(infra, extra_env=env) as running:
        yield running
