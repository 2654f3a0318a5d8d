"""The gateway's read model of billing's ledger (from ``ledger.posted``): each workspace's
balance, the usage rows of every job, each job's own cost, and each key's spend per UTC day.

Order-insensitive like every projection here: the balance keeps the highest version seen, and
the counters move only when their usage row is inserted for the first time, so a replay of the
LEDGER stream (with or without the inbox) rebuilds the same numbers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID

import asyncpg
from puras_common.bus import Delivery
from puras_common.db import fetch_one
from puras_common.events import LedgerPosted
from puras_common.outbox import UnitOfWork

_BALANCE = """
INSERT INTO balances (workspace_id, balance_micros, version) VALUES ($1, $2, $3)
ON CONFLICT (workspace_id) DO UPDATE SET balance_micros = EXCLUDED.balance_micros, version = EXCLUDED.version
WHERE balances.version < EXCLUDED.version
"""

# One round trip for a charge: the balance, the usage row, and (only if the row is new) the
# job's cost and the key's spend for the UTC day of the call.
_CHARGE = f"""
WITH balance AS ({_BALANCE}),
row AS (
    INSERT INTO usage_rows (usage_id, workspace_id, job_id, key_id, attempt, kind, provider, model,
                            variant, input_tokens, output_tokens, units, unit, billed_micros,
                            created_at, cpu_ms, wall_ms)
    VALUES ($4, $1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::numeric, $15, $16, $17, $18, $19)
    ON CONFLICT (usage_id) DO NOTHING
    RETURNING job_id, key_id, billed_micros
),
cost AS (
    INSERT INTO job_costs (job_id, workspace_id, cost_micros, usage_rows)
    SELECT job_id, $1, billed_micros, 1 FROM row WHERE job_id IS NOT NULL
    ON CONFLICT (job_id) DO UPDATE SET cost_micros = job_costs.cost_micros + EXCLUDED.cost_micros,
                                       usage_rows = job_costs.usage_rows + 1
)
INSERT INTO key_spend (key_id, day, spent_micros)
SELECT key_id, $20::date, billed_micros FROM row WHERE key_id IS NOT NULL
ON CONFLICT (key_id, day) DO UPDATE SET spent_micros = key_spend.spent_micros + EXCLUDED.spent_micros
"""


async def apply(uow: UnitOfWork, d: Delivery) -> None:
    """Fold one ledger event (the ``gateway-ledger`` consumer)."""
    if isinstance(d.event, LedgerPosted):
        await apply_posted(uow.conn, d.event)


async def apply_posted(conn: asyncpg.Connection, event: LedgerPosted) -> None:
    p = event.payload
    u = p.usage
    if u is None:
        await conn.execute(_BALANCE, event.workspace_id, p.balance_micros, p.version)
    else:
        await conn.execute(
            _CHARGE,
            event.workspace_id,
            p.balance_micros,
            p.version,
            p.source_event_id,
            p.job_id,
            p.key_id,
            u.attempt,
            u.kind,
            u.provider,
            u.model,
            u.variant,
            u.input_tokens,
            u.output_tokens,
            u.units,
            u.unit,
            u.billed_micros,
            u.recorded_at,
            u.cpu_ms,
            u.wall_ms,
            utc_day(u.recorded_at),
        )
    if p.kind == "grant":
        await conn.execute(
            "UPDATE credit_grants SET posted = true WHERE grant_id = $1 AND NOT posted",
            p.source_event_id,
        )


def utc_day(at: datetime) -> date:
    """The UTC calendar day a moment falls on: the unit of a key's daily cap."""
    return at.astimezone(UTC).date()


async def record_grant(
    conn: asyncpg.Connection, grant_id: UUID, workspace_id: UUID, amount_micros: int
) -> None:
    """Remember a grant this gateway emitted, until its ledger entry arrives."""
    await conn.execute(
        "INSERT INTO credit_grants (grant_id, workspace_id, amount_micros) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        grant_id,
        workspace_id,
        amount_micros,
    )


async def available_micros(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID
) -> tuple[int, int]:
    """``(balance, pending grants)``: the balance billing last reported, and grants not yet in it."""
    row = await fetch_one(
        conn,
        """SELECT coalesce((SELECT balance_micros FROM balances WHERE workspace_id = $1), 0) AS balance,
                  coalesce((SELECT sum(amount_micros) FROM credit_grants
                            WHERE workspace_id = $1 AND NOT posted), 0)::bigint AS pending""",
        workspace_id,
    )
    return row["balance"], row["pending"]


async def spent_today(conn: asyncpg.Connection | asyncpg.Pool, key_id: UUID, now: datetime) -> int:
    """What ``key_id`` has spent on the UTC day of ``now``."""
    spent = await conn.fetchval(
        "SELECT spent_micros FROM key_spend WHERE key_id = $1 AND day = $2", key_id, utc_day(now)
    )
    return spent or 0


async def balance_version(conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID) -> int:
    """How many ledger entries the workspace's balance includes (0 before the first)."""
    version = await conn.fetchval(
        "SELECT version FROM balances WHERE workspace_id = $1", workspace_id
    )
    return version or 0


USAGE_COLUMNS = """usage_id AS id, job_id, key_id, kind, provider, model, variant, input_tokens, output_tokens,
units::text AS units, unit, billed_micros, created_at, cpu_ms, wall_ms"""
"""A usage row as the API lists it."""


async def usage_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    job_id: UUID,
    *,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A job's usage rows, newest first, from the ``(created_at, usage_id)`` cursor ``after``."""
    return await conn.fetch(
        f"""SELECT {USAGE_COLUMNS} FROM usage_rows
           WHERE job_id = $1 AND ($2::timestamptz IS NULL OR (created_at, usage_id) < ($2, $3::uuid))
           ORDER BY created_at DESC, usage_id DESC LIMIT $4""",
        job_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def workspace_usage(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: UUID,
    *,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Every billed call of a workspace in ``[since, until)``, newest first, from the
    ``(created_at, usage_id)`` cursor ``after``."""
    return await conn.fetch(
        f"""SELECT {USAGE_COLUMNS} FROM usage_rows
            WHERE workspace_id = $1
              AND ($2::timestamptz IS NULL OR created_at >= $2)
              AND ($3::timestamptz IS NULL OR created_at < $3)
              AND ($4::timestamptz IS NULL OR (created_at, usage_id) < ($4, $5::uuid))
            ORDER BY created_at DESC, usage_id DESC LIMIT $6""",
        workspace_id,
        since,
        until,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def spend_by_day(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, *, since: datetime
) -> list[asyncpg.Record]:
    """Billed micros and calls per UTC day since ``since`` (days without a call are absent)."""
    return await conn.fetch(
        """SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
                  sum(billed_micros)::bigint AS billed_micros, count(*) AS calls
           FROM usage_rows WHERE workspace_id = $1 AND created_at >= $2
           GROUP BY day ORDER BY day""",
        workspace_id,
        since,
    )


async def spend_by_model(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, *, since: datetime
) -> list[asyncpg.Record]:
    """Billed micros and calls per model since ``since``, the most spent first."""
    return await conn.fetch(
        """SELECT model, kind, sum(billed_micros)::bigint AS billed_micros, count(*) AS calls
           FROM usage_rows WHERE workspace_id = $1 AND created_at >= $2
           GROUP BY model, kind ORDER BY billed_micros DESC, model""",
        workspace_id,
        since,
    )
