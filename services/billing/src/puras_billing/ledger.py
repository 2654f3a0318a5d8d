"""Posting to the ledger: one entry per source event (a unique key, not a check-then-insert),
the balance projection moved in the same transaction, and the events that say so."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import BalanceChanged, CreditGranted, LedgerPosted
from puras_common.events.ledger import BalanceChangedPayload, BilledUsage, LedgerPostedPayload
from puras_common.ids import new_id
from puras_common.outbox import UnitOfWork

EntryKind = Literal["grant", "charge", "refund", "adjustment"]


async def post(
    uow: UnitOfWork,
    *,
    workspace_id: UUID,
    kind: EntryKind,
    amount_micros: int,
    source: Event,
    at: datetime,
    job_id: UUID | None = None,
    key_id: UUID | None = None,
    usage: BilledUsage | None = None,
    note: str = "",
) -> bool:
    """Append one entry for ``source``; False (and nothing written) if it was already posted."""
    entry_id = new_id()
    inserted = await uow.conn.fetchval(
        """INSERT INTO ledger (entry_id, workspace_id, kind, amount_micros, source_event_id, job_id, key_id, note, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (source_event_id) DO NOTHING RETURNING seq""",
        entry_id, workspace_id, kind, amount_micros, source.id, job_id, key_id, note, at,
    )
    if inserted is None:
        return False
    balance = await uow.conn.fetchrow(
        """INSERT INTO balances (workspace_id, balance_micros, entries) VALUES ($1, $2, 1)
           ON CONFLICT (workspace_id) DO UPDATE SET balance_micros = balances.balance_micros + EXCLUDED.balance_micros,
                                                  entries = balances.entries + 1
           RETURNING balance_micros, entries""",
        workspace_id, amount_micros,
    )
    uow.emit(
        LedgerPosted.new(
            LedgerPostedPayload(
                entry_id=entry_id,
                kind=kind,
                amount_micros=amount_micros,
                balance_micros=balance["balance_micros"],
                version=balance["entries"],
                job_id=job_id,
                source_event_id=source.id,
                key_id=key_id,
                usage=usage,
            ),
            producer="billing",
            workspace_id=workspace_id,
            job_id=job_id,
            caused_by=source,
        ),
        BalanceChanged.new(
            BalanceChangedPayload(balance_micros=balance["balance_micros"], version=balance["entries"]),
            producer="billing",
            workspace_id=workspace_id,
            caused_by=source,
        ),
    )
    return True


async def apply_grant(uow: UnitOfWork, d: Delivery) -> None:
    event = d.event
    if isinstance(event, CreditGranted) and event.workspace_id is not None:
        await post(
            uow,
            workspace_id=event.workspace_id,
            kind="grant",
            amount_micros=event.payload.amount_micros,
            source=event,
            at=event.occurred_at,
            note=event.payload.note,
        )
