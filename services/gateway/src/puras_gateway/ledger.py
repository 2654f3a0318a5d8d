"""The gateway's read model of billing's ledger (from ``ledger.posted``): each workspace's
balance, the usage rows of every job, each job's own cost, and each key's spend per UTC day.

Order-insensitive like every projection here: the balance keeps the highest version seen, and
the counters move only when their usage row is inserted for the first time, so a replay of the
LEDGER stream (with or without the inbox) rebuilds the same numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import asyncpg
from puras_common.bus import Delivery
from puras_common.db import fetch_one
from puras_common.events import LedgerPosted
from puras_common.events.jobs import JobUsagePayload
from puras_common.events.ledger import BilledUsage
from puras_common.outbox import UnitOfWork

# Each workspace's newest balance of the batch, kept only if newer than the one held.
_BALANCES = """
INSERT INTO balances (workspace_id, balance_micros, version)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) ORDER BY 1
ON CONFLICT (workspace_id) DO UPDATE SET balance_micros = EXCLUDED.balance_micros, version = EXCLUDED.version
WHERE balances.version < EXCLUDED.version
"""

# The batch's usage rows, and for the rows new to the table (a row seen before counts no
# more), the jobs' costs and the keys' spend on the UTC day of each call, each summed first.
# Rows are locked in key order, as every gateway process takes them.
_CHARGES = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::integer[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[],
                         $12::text[], $13::text[], $14::bigint[], $15::timestamptz[],
                         $16::bigint[], $17::bigint[], $18::date[])
        AS i(usage_id, workspace_id, job_id, key_id, attempt, kind, provider, model, variant,
             input_tokens, output_tokens, units, unit, billed_micros, created_at, cpu_ms,
             wall_ms, day)
),
row AS (
    INSERT INTO usage_rows (usage_id, workspace_id, job_id, key_id, attempt, kind, provider, model,
                            variant, input_tokens, output_tokens, units, unit, billed_micros,
                            created_at, cpu_ms, wall_ms)
    SELECT usage_id, workspace_id, job_id, key_id, attempt, kind, provider, model, variant,
           input_tokens, output_tokens, units::numeric, unit, billed_micros, created_at, cpu_ms,
           wall_ms
    FROM input ORDER BY usage_id
    ON CONFLICT (usage_id) DO NOTHING
    RETURNING usage_id
),
fresh AS (SELECT i.* FROM input i JOIN row USING (usage_id)),
cost AS (
    INSERT INTO job_costs (job_id, workspace_id, cost_micros, usage_rows)
    SELECT job_id, (array_agg(workspace_id))[1], sum(billed_micros), count(*)
    FROM fresh WHERE job_id IS NOT NULL GROUP BY job_id ORDER BY job_id
    ON CONFLICT (job_id) DO UPDATE SET cost_micros = job_costs.cost_micros + EXCLUDED.cost_micros,
                                       usage_rows = job_costs.usage_rows + EXCLUDED.usage_rows
)
INSERT INTO key_spend (key_id, day, spent_micros)
SELECT key_id, day, sum(billed_micros) FROM fresh WHERE key_id IS NOT NULL
GROUP BY key_id, day ORDER BY key_id, day
ON CONFLICT (key_id, day) DO UPDATE SET spent_micros = key_spend.spent_micros + EXCLUDED.spent_micros
"""


async def apply_batch(uow: UnitOfWork, deliveries: Sequence[Delivery]) -> None:
    """Fold a batch of ledger events (the ``gateway-ledger`` consumer)."""
    await fold(uow.conn, [d.event for d in deliveries if isinstance(d.event, LedgerPosted)])


async def fold(conn: asyncpg.Connection, events: Sequence[LedgerPosted]) -> None:
    """Fold ``events``, in any order and with any repeats, in at most three statements: the
    balances, the usage rows with what they add to jobs and keys, and the grants posted."""
    newest: dict[UUID, tuple[int, int]] = {}
    rows: dict[UUID, tuple[Any, ...]] = {}
    grants: set[UUID] = set()
    for event in events:
        p = event.payload
        if event.workspace_id is None:
            continue
        held = newest.get(event.workspace_id)
        if held is None or p.version > held[0]:
            newest[event.workspace_id] = (p.version, p.balance_micros)
        if (u := p.usage) is not None:
            rows[p.source_event_id] = usage_row(
                p.source_event_id, event.workspace_id, p.job_id, p.key_id, u, u.recorded_at
            )
        if p.kind == "grant":
            grants.add(p.source_event_id)
    if newest:
        await conn.execute(
            _BALANCES,
            list(newest),
            [balance for _, balance in newest.values()],
            [version for version, _ in newest.values()],
        )
    await add_usage(conn, rows.values())
    if grants:
        await conn.execute(
            "UPDATE credit_grants SET posted = true WHERE grant_id = ANY($1) AND NOT posted",
            list(grants),
        )


def usage_row(
    usage_id: UUID,
    workspace_id: UUID,
    job_id: UUID | None,
    key_id: UUID | None,
    u: BilledUsage | JobUsagePayload,
    recorded_at: datetime,
) -> tuple[Any, ...]:
    """A usage row for :func:`add_usage`, from a ledger entry's billed usage, or from the
    ``job.usage`` of a usage the ledger does not carry (compute at a price of 0)."""
    variant = u.variant if isinstance(u, BilledUsage) else None
    return (
        usage_id,
        workspace_id,
        job_id,
        key_id,
        u.attempt,
        u.kind,
        u.provider,
        u.model,
        variant,
        u.input_tokens,
        u.output_tokens,
        u.units,
        u.unit,
        u.billed_micros,
        recorded_at,
        u.cpu_ms,
        u.wall_ms,
        utc_day(recorded_at),
    )


async def add_usage(conn: asyncpg.Connection, rows: Collection[tuple[Any, ...]]) -> None:
    """Insert usage rows (one per usage id, however often given), and add the new ones to their
    jobs' costs and their keys' spend, in one statement."""
    if rows:
        await conn.execute(_CHARGES, *zip(*rows, strict=True))


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
