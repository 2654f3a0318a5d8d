"""Charging usage: every ``usage.recorded`` is priced with the registry and charged exactly once.

The usage row, the ledger entry, the balance and the events that announce them commit in one
transaction. ``usage_id`` (the event id) is the usage table's primary key, so a redelivered or
replayed event inserts nothing and charges nothing, whatever the inbox remembers.
"""

from __future__ import annotations

from uuid import UUID

from puras_common.bus import Delivery
from puras_common.events import UsageRecorded
from puras_common.events.ledger import BilledUsage
from puras_common.observability import USAGE_TOKENS
from puras_common.outbox import UnitOfWork
from puras_pricing import Pricebook, Quote, compute_measures, decimal_text

from puras_billing import holds, ledger


class UnattributedUsage(ValueError):
    """A usage event without a workspace: nobody to bill, so it is parked rather than lost."""

    def __init__(self, usage_id: UUID) -> None:
        super().__init__(f"usage event {usage_id} names no workspace")


_INSERT_USAGE = """
INSERT INTO usage (usage_id, workspace_id, job_id, key_id, attempt, kind, provider, model, variant,
                   input_tokens, output_tokens, units, unit, inputs, request_id, margin_pct,
                   billed_micros, created_at)
VALUES ($10::uuid, $11::uuid, $12::uuid, $13::uuid, $14::integer, $15::text, $16::text, $17::text, $18::text,
        $19::bigint, $20::bigint, $21::numeric, $22::text, $23::jsonb, $24::text, $25::numeric, $26::bigint,
        $27::timestamptz)
ON CONFLICT (usage_id) DO NOTHING
RETURNING usage_id
"""


class UsageCharges:
    """The ``billing-usage`` consumer's policy: price, record the row, post the charge."""

    def __init__(self, pricebook: Pricebook) -> None:
        self.pricebook = pricebook

    async def apply(self, uow: UnitOfWork, d: Delivery) -> None:
        """Apply one delivery (ProjectionRunner's ``apply``)."""
        if isinstance(d.event, UsageRecorded):
            await self.charge(uow, d.event)

    async def charge(self, uow: UnitOfWork, event: UsageRecorded) -> bool:
        """Charge ``event``; False (and nothing written) if it was charged before.

        An unpriceable event (an unknown slug) raises ``PricingError``: it is retried and then
        parked on the dead-letter stream, counted, never charged at a guess.
        """
        if event.workspace_id is None:
            raise UnattributedUsage(event.id)
        p = event.payload
        quote = self.pricebook.quote_usage(p)
        # The usage row gates the entry, in one round trip: a usage id seen before writes
        # neither (the usage table's key is the idempotency key, whatever the inbox holds).
        row = ledger.Gate(
            _INSERT_USAGE,
            (
                event.id,
                event.workspace_id,
                p.job_id,
                p.key_id,
                p.attempt,
                p.kind,
                p.provider,
                p.model,
                quote.variant,
                p.input_tokens,
                p.output_tokens,
                quote.units_text,
                quote.unit,
                p.inputs,
                p.request_id,
                decimal_text(self.pricebook.margin_pct),
                quote.billed_micros,
                event.occurred_at,
            ),
        )
        posted = await ledger.post(
            uow,
            workspace_id=event.workspace_id,
            kind="charge",
            amount_micros=-quote.billed_micros,
            source=event,
            at=event.occurred_at,
            job_id=p.job_id,
            key_id=p.key_id,
            usage=billed(event, quote),
            note=p.model,
            gate=row,
        )
        await holds.settle(uow.conn, p.hold_id)
        if posted:
            USAGE_TOKENS.labels(p.model, "input").inc(p.input_tokens or 0)
            USAGE_TOKENS.labels(p.model, "output").inc(p.output_tokens or 0)
        return posted


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
