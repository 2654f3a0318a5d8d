"""The ``idempotency_keys`` table: which job a request's ``Idempotency-Key`` created, and the
hash of that request's body, for 24 hours."""

from __future__ import annotations

from typing import Final
from uuid import UUID

import asyncpg

WINDOW: Final = "24 hours"
"""How long a key names its job; afterwards the key may be used again."""


async def claim(
    conn: asyncpg.Connection, *, workspace_id: UUID, key: str, body_sha256: bytes, job_id: UUID
) -> bool:
    """Record ``key`` for ``job_id`` in this transaction; False if a request holds it already.

    A concurrent claim of the same key waits on the row until the first transaction ends.
    """
    claimed = await conn.fetchval(
        f"""INSERT INTO idempotency_keys (workspace_id, key, body_sha256, job_id) VALUES ($1, $2, $3, $4)
            ON CONFLICT (workspace_id, key) DO UPDATE
            SET body_sha256 = EXCLUDED.body_sha256, job_id = EXCLUDED.job_id, created_at = now()
            WHERE idempotency_keys.created_at <= now() - interval '{WINDOW}'
            RETURNING job_id""",
        workspace_id,
        key,
        body_sha256,
        job_id,
    )
    return claimed is not None


async def find(
    conn: asyncpg.Connection | asyncpg.Pool, *, workspace_id: UUID, key: str
) -> asyncpg.Record | None:
    """``(body_sha256, job_id)`` of the request that used ``key`` within the window."""
    return await conn.fetchrow(
        f"""SELECT body_sha256, job_id FROM idempotency_keys
            WHERE workspace_id = $1 AND key = $2 AND created_at > now() - interval '{WINDOW}'""",
        workspace_id,
        key,
    )
