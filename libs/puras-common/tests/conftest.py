from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from puras_testing import Infra, Scratch, scratch_schema


@pytest_asyncio.fixture(loop_scope="session")
async def scratch(infra: Infra) -> AsyncIterator[Scratch]:
    """A fresh schema with the common tables and a ``counters`` table, for one test."""
    async with scratch_schema(infra.admin_database_dsn) as s:
        await s.pool.execute("CREATE TABLE counters (name text PRIMARY KEY, n int NOT NULL)")
        yield s
