from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest_asyncio
from puras_common.db import create_pool
from puras_common.migrate import common_migrations, migrate
from puras_common.outbox import Outbox
from puras_common.testing import Infra


@dataclass
class Scratch:
    """A fresh schema with the common tables, for one test."""

    schema: str
    dsn: str
    pool: asyncpg.Pool
    outbox: Outbox


@pytest_asyncio.fixture(loop_scope="session")
async def scratch(infra: Infra, admin_db: asyncpg.Connection) -> AsyncIterator[Scratch]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await admin_db.execute(f'CREATE SCHEMA "{schema}"')
    dsn = infra.admin_database_dsn
    pool = await create_pool(dsn, schema=schema, application_name="test", min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn, schema=schema, sources=[common_migrations()])
        await conn.execute("CREATE TABLE counters (name text PRIMARY KEY, n int NOT NULL)")
    try:
        yield Scratch(schema, dsn, pool, Outbox(pool, schema=schema))
    finally:
        await pool.close()
