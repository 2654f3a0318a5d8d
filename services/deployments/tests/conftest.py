"""Fixtures of the deployments service tests."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator

import pytest_asyncio
from nats.aio.client import Client as NATS
from puras_testing import Infra

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from deployments_testlib import Harness, running


@pytest_asyncio.fixture(loop_scope="session")
async def harness(infra: Infra, nc: NATS) -> AsyncIterator[Harness]:
    async with running(infra, nc) as h:
        yield h
