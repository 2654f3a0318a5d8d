"""Charging usage: every ``usage.recorded`` is priced with the registry and charged exactly once.

The usage rows, the ledger entries, the balances and the events that announce them commit in one
transaction, a batch of events in one statement. ``usage_id`` (the event id) is the usage
table's primary key, so a redelivered or replayed event inserts nothing and charges nothing,
whatever the inbox remembers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import orjson
from puras_common.bus import Delivery
from puras_common.events import UsageRecorded
from puras_common.events.ledger import BilledUsage
from puras_common.ids import new_id
from puras_common.outbox import UnitOfWork
from puras_pricing import Pricebook, Quote, compute_measures, decimal_text

from puras_billing import ledger


class UnattributedUsage(ValueError):
    """A usage event without a workspace: nobody to bill, so it is parked rather than lost."""

    def __init__(self, usage_id: UUID) -> None:
        super().__init__(f"usage event {usage_id} names no workspace")


# One statement charges a whole batch: the usage rows, the entries of the rows that were new
# (a usage id seen before writes neither: the usage table's key is the idempotency key, whatever
# the inbox holds), each workspace's balance moved by the sum of its new entries, and the holds
# the calls name ended. It returns the new entries' sources, then each moved balance.
_CHARGE = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::integer[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[],
                         $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[],
                         $17::timestamptz[], $18::uuid[])
        AS i(usage_id, workspace_id, job_id, key_id, attempt, kind, provider, model, variant,
             input_tokens, output_tokens, units, unit, inputs, request_id, billed_micros,
             created_at, entry_id)
),
recorded AS (
    INSERT INTO usage (usage_id, workspace_id, job_id, key_id, attempt, kind, provider, model,
                       variant, input_tokens, output_tokens, units, unit, inputs, request_id,
                       margin_pct, billed_micros, created_at)
    SELECT usage_id, workspace_id, job_id, key_id, attempt, kind, provider, model, variant,
           input_tokens, output_tokens, units::numeric, unit, inputs::jsonb, request_id,
           $19::numeric, billed_micros, created_at
    FROM input
    ON CONFLICT (usage_id) DO NOTHING
    RETURNING usage_id
),
entry AS (
    INSERT INTO ledger (entry_id, workspace_id, kind, amount_micros, source_event_id, job_id,
                        key_id, note, created_at)
    SELECT i.entry_id, i.workspace_id, 'charge', -i.billed_micros, i.usage_id, i.job_id,
           i.key_id, i.model, i.created_at
    FROM input i JOIN recorded USING (usage_id)
    ON CONFLICT (source_event_id) DO NOTHING
    RETURNING source_event_id, workspace_id, amount_micros
),
moved AS (
    INSERT INTO balances (workspace_id, balance_micros, entries)
    SELECT workspace_id, sum(amount_micros), count(*) FROM entry GROUP BY workspace_id
    ORDER BY workspace_id  -- rows locked in one order by every billing process: no deadlock
    ON CONFLICT (workspace_id) DO UPDATE
        SET balance_micros = balances.balance_micros + EXCLUDED.balance_micros,
            entries = balances.entries + EXCLUDED.entries
    RETURNING workspace_id, balance_micros, entries
),
settled AS (
    UPDATE holds SET ended_at = now() WHERE hold_id = ANY($20::uuid[]) AND ended_at IS NULL
)
SELECT false AS moved, source_event_id AS id, 0::bigint AS balance_micros, 0::bigint AS entries
FROM entry
UNION ALL
SELECT true, workspace_id, balance_micros, entries FROM moved
"""


class UsageCharges:
    """The ``billing-usage`` consumer's policy: price, record the row, post the charge."""

    def __init__(self, pricebook: Pricebook) -> None:
        self.pricebook = pricebook

    async def apply_batch(self, uow: UnitOfWork, deliveries: Sequence[Delivery]) -> int:
        """Apply a batch of deliveries (ProjectionRunner's ``apply_batch``): charges commute,
        and the usage row's key makes each exactly-once, so the runner keeps no inbox for it.
        Returns how many were charged for the first time."""
        events = {d.event.id: d.event for d in deliveries if isinstance(d.event, UsageRecorded)}
        return await self.charge(uow, list(events.values()))

    async def charge(self, uow: UnitOfWork, events: Sequence[UsageRecorded]) -> int:
        """Charge ``events`` (distinct ids) in one round trip; returns how many were new.

        An event charged before writes nothing and emits nothing. An unpriceable event (an
        unknown slug) raises ``PricingError`` and an unattributed one ``UnattributedUsage``,
        before anything is written: the runner then applies the batch one event at a time, so
        only that event is retried and then parked on the dead-letter stream, counted, never
        charged at a guess.
        """
        entries = [self._entry(event) for event in events]
        if not entries:
            return 0
        columns = list(zip(*(self._row(entry) for entry in entries), strict=True))
        holds = [e.payload.hold_id for e in events if e.payload.hold_id is not None]
        rows = await uow.conn.fetch(
            _CHARGE, *columns, decimal_text(self.pricebook.margin_pct), holds
        )
        new = {r["id"] for r in rows if not r["moved"]}
        balances = {r["id"]: (r["balance_micros"], r["entries"]) for r in rows if r["moved"]}
        posted = [entry for entry in entries if entry.source.id in new]
        # The statement moved each balance once, by the sum of its new entries; walking them
        # backwards gives the balance and version each entry left behind, in batch order.
        after: list[tuple[int, int]] = []
        for entry in reversed(posted):
            balance, version = balances[entry.workspace_id]
            after.append((balance, version))
            balances[entry.workspace_id] = (balance - entry.amount_micros, version - 1)
        last: dict[UUID, tuple[ledger.Posted, int, int]] = {}
        moved: set[UUID] = set()
        for entry, (balance, version) in zip(posted, reversed(after), strict=True):
            ledger.announce(uow, entry, balance, version)
            last[entry.workspace_id] = (entry, balance, version)
            if entry.amount_micros:
                moved.add(entry.workspace_id)
        # A batch that charged a workspace nothing (compute at the default price of 0) left its
        # balance where it was: its readers have that balance already, or will from the event
        # that set it, so nothing is announced.
        uow.emit(*(ledger.balance_changed(*last[ws]) for ws in last if ws in moved))
        ledger.count(posted)
        return len(posted)

    def _entry(self, event: UsageRecorded) -> ledger.Posted:
        if event.workspace_id is None:
            raise UnattributedUsage(event.id)
        p = event.payload
        quote = self.pricebook.quote_usage(p)
        return ledger.Posted(
            entry_id=new_id(),
            workspace_id=event.workspace_id,
            kind="charge",
            amount_micros=-quote.billed_micros,
            source=event,
            at=event.occurred_at,
            job_id=p.job_id,
            key_id=p.key_id,
            usage=billed(event, quote),
            note=p.model,
        )

    @staticmethod
    def _row(entry: ledger.Posted) -> tuple[Any, ...]:
        """The statement's input row for ``entry`` (in ``_CHARGE``'s column order)."""
        source = entry.source
        assert isinstance(source, UsageRecorded) and entry.usage is not None
        p, u = source.payload, entry.usage
        return (
            source.id,
            entry.workspace_id,
            p.job_id,
            p.key_id,
            p.attempt,
            p.kind,
            p.provider,
            p.model,
            u.variant,
            p.input_tokens,
            p.output_tokens,
            u.units,
            u.unit,
            None if p.inputs is None else orjson.dumps(p.inputs).decode(),
            p.request_id,
            u.billed_micros,
            entry.at,
            entry.entry_id,
        )


def billed(event: UsageRecorded, quote: Quote) -> BilledUsage:
    """The usage row as ``ledger.posted`` carries it to read models."""
    p = event.payload
    return BilledUsage(
        kind=p.kind,
        provider=p.provider,
        model=p.model,
        input_tokens=p.input_tokens,
        output_tokens=p.output_tokens,
        units=quote.units_text,
        unit=quote.unit,
        billed_micros=quote.billed_micros,
        attempt=p.attempt,
        variant=quote.variant,
        recorded_at=event.occurred_at,
        **compute_measures(p.kind, p.inputs),
    )
