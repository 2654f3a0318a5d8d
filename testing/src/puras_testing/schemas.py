"""Scratch schemas: a service's tables in a fresh schema of the session's database, so a test
exercises the service's own SQL without touching the running platform's state."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from puras_common.db import as_connection, create_pool
from puras_common.migrate import MigrationSource, common_migrations, migrate
from puras_common.outbox import Outbox


@dataclass
class Scratch:
    schema: str
    dsn: str
    pool: asyncpg.Pool
    outbox: Outbox


@contextlib.asynccontextmanager
async def scratch_schema(admin_dsn: str, *sources: MigrationSource) -> AsyncIterator[Scratch]:
    """A new schema with the common tables and ``sources``' migrations; dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        pool = await create_pool(
            admin_dsn, schema=schema, application_name="test", min_size=1, max_size=4
        )
        try:
            async with pool.acquire() as conn:
                await migrate(
                    as_connection(conn), schema=schema, sources=[common_migrations(), *sources]
                )
            yield Scratch(schema, admin_dsn, pool, Outbox(pool, schema=schema))
        finally:
            await pool.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await admin.close()
