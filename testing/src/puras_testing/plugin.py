"""pytest plugin: session-wide real servers.

Fixtures: ``infra`` (NATS + PostgreSQL for the session), ``nc`` / ``js`` (an admin connection),
``admin_db`` (a superuser connection to the session's database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from puras_common.bus import JetStream, connect_nats, jetstream
from puras_common.consumers import provision_bus

from puras_testing.infra import Infra, start_infra


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def infra() -> AsyncIterator[Infra]:
    """NATS JetStream and PostgreSQL for the whole session, with every stream and durable
    consumer provisioned."""
    async with start_infra() as running:
        nc = await connect_nats(running.nats_url(), name="test-setup")
        try:
            await provision_bus(nc.jetstream())
        finally:
            await nc.close()
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def nc(infra: Infra) -> AsyncIterator[NATS]:
    """An admin NATS connection for one test."""
    conn = await connect_nats(infra.nats_url(), name="test")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def js(nc: NATS) -> JetStream:
    """The JetStream context of ``nc``, as services hold theirs."""
    return jetstream(nc)


@pytest_asyncio.fixture(loop_scope="session")
async def admin_db(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the session's database."""
    conn = await asyncpg.connect(infra.admin_database_dsn)
    try:
        yield conn
    finally:
        await conn.close()
