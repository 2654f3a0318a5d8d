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
from puras_common.events import LedgerPosted
from puras_common.outbox import UnitOfWork

_BALANCE = """
INSERT INTO balances (workspace_id, balance_micros, version) VALUES ($1, $2, $3)
ON CONFLICT (workspace_id) DO UPDATE SET balance_micros = EXCLUDED.balance_micros, version = EXCLUDED.version
WHERE balances.version < EXCLUDED.version
"""

_USAGE = """
INSERT INTO usage_rows (usage_id, workspace_id, job_id, key_id, attempt, kind, provider, model, variant,
                        input_tokens, output_tokens, units, unit, billed_micros, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::numeric, $13, $14, $15)
ON CONFLICT (usage_id) DO NOTHING
RETURNING true
"""

_JOB_COST = """
INSERT INTO job_costs (job_id, workspace_id, cost_micros, usage_rows) VALUES ($1, $2, $3, 1)
ON CONFLICT (job_id) DO UPDATE SET cost_micros = job_costs.cost_micros + EXCLUDED.cost_micros,
                                   usage_rows = job_costs.usage_rows + 1
"""

_KEY_SPEND = """
INSERT INTO key_spend (key_id, day, spent_micros) VALUES ($1, $2, $3)
ON CONFLICT (key_id, day) DO UPDATE SET spent_micros = key_spend.spent_micros + EXCLUDED.spent_micros
"""


async def apply(uow: UnitOfWork, d: Delivery) -> None:
    """Fold one ledger event (the ``gateway-ledger`` consumer)."""
    if isinstance(d.event, LedgerPosted):
        await apply_posted(uow.conn, d.event)


async def apply_posted(conn: asyncpg.Connection, event: LedgerPosted) -> None:
    p = event.payload
    await conn.execute(_BALANCE, event.workspace_id, p.balance_micros, p.version)
    if p.kind == "grant":
        await conn.execute("UPDATE credit_grants SET posted = true WHERE grant_id = $1 AND NOT posted", p.source_event_id)
    u = p.usage
    if u is None:
        return
    inserted = await conn.fetchval(
        _USAGE, p.source_event_id, event.workspace_id, p.job_id, p.key_id, u.attempt, u.kind, u.provider,
        u.model, u.variant, u.input_tokens, u.output_tokens, u.units, u.unit, u.billed_micros, u.recorded_at,
    )
    if not inserted:
        return
    if p.job_id is not None:
        await conn.execute(_JOB_COST, p.job_id, event.workspace_id, u.billed_micros)
    if p.key_id is not None:
        await conn.execute(_KEY_SPEND, p.key_id, utc_day(u.recorded_at), u.billed_micros)


def utc_day(at: datetime) -> date:
    """The UTC calendar day a moment falls on: the unit of a key's daily cap."""
    return at.astimezone(UTC).date()


async def record_grant(conn: asyncpg.Connection, grant_id: UUID, workspace_id: UUID, amount_micros: int) -> None:
    """Remember a grant this gateway emitted, until its ledger entry arrives."""
    await conn.execute(
        "INSERT INTO credit_grants (grant_id, workspace_id, amount_micros) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        grant_id, workspace_id, amount_micros,
    )


async def available_micros(conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID) -> tuple[int, int]:
    """``(balance, pending grants)``: the balance billing last reported, and grants not yet in it."""
    row = await conn.fetchrow(
        """SELECT coalesce((SELECT balance_micros FROM balances WHERE workspace_id = $1), 0) AS balance,
                  coalesce((SELECT sum(amount_micros) FROM credit_grants
                            WHERE workspace_id = $1 AND NOT posted), 0)::bigint AS pending""",
        workspace_id,
    )
    return row["balance"], row["pending"]


async def spent_today(conn: asyncpg.Connection | asyncpg.Pool, key_id: UUID, now: datetime) -> int:
    """What ``key_id`` has spent on the UTC day of ``now``."""
    spent = await conn.fetchval("SELECT spent_micros FROM key_spend WHERE key_id = $1 AND day = $2", key_id, utc_day(now))
    return spent or 0
