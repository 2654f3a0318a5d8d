"""Posting to the ledger: one entry per source event (a unique key, not a check-then-insert),
the balance projection moved in the same transaction, and the events that say so."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from puras_common.bus import Delivery
from puras_common.envelope import Event
from puras_common.events import BalanceChanged, CreditGranted, LedgerPosted
from puras_common.events.ledger import BalanceChangedPayload, BilledUsage, LedgerPostedPayload
from puras_common.ids import new_id
from puras_common.observability import LEDGER_ENTRIES, USAGE_MICROS, USAGE_TOKENS
from puras_common.outbox import UnitOfWork

EntryKind = Literal["grant", "charge", "refund", "adjustment"]

_ENTRY_AND_BALANCE = """
entry AS (
    INSERT INTO ledger (entry_id, workspace_id, kind, amount_micros, source_event_id, job_id, key_id, note, created_at)
    SELECT $1::uuid, $2::uuid, $3::text, $4::bigint, $5::uuid, $6::uuid, $7::uuid, $8::text, $9::timestamptz
    ON CONFLICT (source_event_id) DO NOTHING
    RETURNING workspace_id, amount_micros
)
INSERT INTO balances (workspace_id, balance_micros, entries)
SELECT workspace_id, amount_micros, 1 FROM entry
ON CONFLICT (workspace_id) DO UPDATE SET balance_micros = balances.balance_micros + EXCLUDED.balance_micros,
                                         entries = balances.entries + 1
RETURNING balance_micros, entries
"""
_POST = "WITH " + _ENTRY_AND_BALANCE


@dataclass(frozen=True)
class Posted:
    """One entry: what ``ledger.posted`` says about it."""

    entry_id: UUID
    workspace_id: UUID
    kind: EntryKind
    amount_micros: int
    source: Event
    at: datetime
    job_id: UUID | None = None
    key_id: UUID | None = None
    usage: BilledUsage | None = None
    note: str = ""


async def post(uow: UnitOfWork, entry: Posted) -> bool:
    """Append ``entry``; False (and nothing written) if its source was already posted."""
    # One round trip: the entry, and the balance only if the entry was new.
    balance = await uow.conn.fetchrow(
        _POST,
        entry.entry_id,
        entry.workspace_id,
        entry.kind,
        entry.amount_micros,
        entry.source.id,
        entry.job_id,
        entry.key_id,
        entry.note,
        entry.at,
    )
    if balance is None:
        return False
    announce(uow, entry, balance["balance_micros"], balance["entries"])
    uow.emit(balance_changed(entry, balance["balance_micros"], balance["entries"]))
    count([entry])
    return True


def announce(uow: UnitOfWork, entry: Posted, balance_micros: int, version: int) -> None:
    """Emit ``ledger.posted`` for ``entry``, which left its workspace's balance at
    ``balance_micros`` as its ``version``-th entry."""
    uow.emit(
        LedgerPosted.new(
            LedgerPostedPayload(
                entry_id=entry.entry_id,
                kind=entry.kind,
                amount_micros=entry.amount_micros,
                balance_micros=balance_micros,
                version=version,
                job_id=entry.job_id,
                source_event_id=entry.source.id,
                key_id=entry.key_id,
                usage=entry.usage,
            ),
            producer="billing",
            workspace_id=entry.workspace_id,
            job_id=entry.job_id,
            caused_by=entry.source,
        )
    )


def count(entries: Sequence[Posted]) -> None:
    """Count posted entries in the metrics, one update per label however many entries."""
    kinds: Counter[str] = Counter()
    micros: Counter[str] = Counter()
    tokens: Counter[tuple[str, str]] = Counter()
    for entry in entries:
        kinds[entry.kind] += 1
        if entry.usage is not None:
            micros[entry.note or "unknown"] -= entry.amount_micros
            tokens[entry.usage.model, "input"] += entry.usage.input_tokens or 0
            tokens[entry.usage.model, "output"] += entry.usage.output_tokens or 0
    for kind, n in kinds.items():
        LEDGER_ENTRIES.labels(kind).inc(n)
    for model, amount in micros.items():
        USAGE_MICROS.labels(model).inc(amount)
    for (model, side), n in tokens.items():
        USAGE_TOKENS.labels(model, side).inc(n)


def balance_changed(last: Posted, balance_micros: int, version: int) -> BalanceChanged:
    """``balance.changed``: the balance ``last`` left its workspace at, as its ``version``-th
    entry. Consumers keep the highest version, so a transaction that posts several entries to
    one workspace announces only its last balance."""
    return BalanceChanged.new(
        BalanceChangedPayload(balance_micros=balance_micros, version=version),
        producer="billing",
        workspace_id=last.workspace_id,
        caused_by=last.source,
    )


async def apply_grant(uow: UnitOfWork, d: Delivery) -> None:
    event = d.event
    if isinstance(event, CreditGranted) and event.workspace_id is not None:
        await post(
            uow,
            Posted(
                entry_id=new_id(),
                workspace_id=event.workspace_id,
                kind="grant",
                amount_micros=event.payload.amount_micros,
                source=event,
                at=event.occurred_at,
                note=event.payload.note,
            ),
        )
