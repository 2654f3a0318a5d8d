"""Posting to the ledger: one entry per source event (a unique key, not a check-then-insert),
the balance projection moved in the same transaction, and the events that say so."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import BalanceChanged, CreditGranted, LedgerPosted
from puras_common.events.ledger import BalanceChangedPayload, BilledUsage, LedgerPostedPayload
from puras_common.ids import new_id
from puras_common.observability import LEDGER_ENTRIES, USAGE_MICROS
from puras_common.outbox import UnitOfWork

EntryKind = Literal["grant", "charge", "refund", "adjustment"]

_ENTRY_AND_BALANCE = """
entry AS (
    INSERT INTO ledger (entry_id, workspace_id, kind, amount_micros, source_event_id, job_id, key_id, note, created_at)
    SELECT $1::uuid, $2::uuid, $3::text, $4::bigint, $5::uuid, $6::uuid, $7::uuid, $8::text, $9::timestamptz
    {gated}
    ON CONFLICT (source_event_id) DO NOTHING
    RETURNING workspace_id, amount_micros
)
INSERT INTO balances (workspace_id, balance_micros, entries)
SELECT workspace_id, amount_micros, 1 FROM entry
ON CONFLICT (workspace_id) DO UPDATE SET balance_micros = balances.balance_micros + EXCLUDED.balance_micros,
                                         entries = balances.entries + 1
RETURNING balance_micros, entries
"""
_POST = "WITH " + _ENTRY_AND_BALANCE.format(gated="")


@dataclass(frozen=True)
class Gate:
    """A statement that must write a row for the entry to be posted, run in the same round trip
    (billing's usage row); its parameters are numbered from ``$10``."""

    sql: str
    args: tuple[Any, ...]

    def statement(self) -> str:
        return f"WITH gate AS ({self.sql}),\n" + _ENTRY_AND_BALANCE.format(gated="FROM gate")


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
    gate: Gate | None = None,
) -> bool:
    """Append one entry for ``source``; False (and nothing written) if it was already posted,
    or if ``gate`` wrote nothing."""
    entry_id = new_id()
    # One round trip: the entry, and the balance only if the entry was new.
    sql, extra = (_POST, ()) if gate is None else (gate.statement(), gate.args)
    balance = await uow.conn.fetchrow(
        sql,
        entry_id,
        workspace_id,
        kind,
        amount_micros,
        source.id,
        job_id,
        key_id,
        note,
        at,
        *extra,
    )
    if balance is None:
        return False
    LEDGER_ENTRIES.labels(kind).inc()
    if usage is not None:
        USAGE_MICROS.labels(note or "unknown").inc(-amount_micros)
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
            BalanceChangedPayload(
                balance_micros=balance["balance_micros"], version=balance["entries"]
            ),
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
