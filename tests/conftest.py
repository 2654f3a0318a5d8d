"""Cross-service tests run against the whole platform: every service as its own process on the
session's real NATS JetStream and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from puras_cli.testing import Platform, start_platform
from puras_common.testing import Infra


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform(infra: Infra) -> AsyncIterator[Platform]:
    # A short lease, so a lost runner's job moves to another runner within seconds; a short SSE
    # ping interval, so tests see pings without waiting 15 s.
    async with start_platform(infra, extra_env={"PURAS_FUNCTION_RUNNER_LEASE_SECONDS": "3", "PURAS_GATEWAY_SSE_PING_SECONDS": "1"}) as running:
        yield running
