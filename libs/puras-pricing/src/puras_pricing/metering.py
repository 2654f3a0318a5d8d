"""Metering: the events a runner publishes for one billable upstream call.

Two events, published together in this order before the job's terminal event:

* ``usage.recorded`` on USAGE (``usage.<workspace_id>.recorded``): the raw measures billing
  prices and charges, once per event id;
* ``job.usage`` on JOBS (``job.<job_id>.usage``): a copy for the job's public history, where
  clients see it as a ``usage`` event with a JOBS sequence id like every other job event. It
  carries the price :mod:`puras_pricing.prices` gives, which is the one billing charges.

Compute that costs nothing at the operator's rates (the default) sends only ``job.usage``,
marked ``ledger: false``: there is nothing to charge, and the gateway takes the job's usage row
from it. An attempt's own compute is not even sent as that: the event that ends the attempt
carries its row (:func:`carried`).

Pricing first also means an unpriceable call (an unknown slug) is refused before it is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from puras_common.attempts import AttemptClient, CompleteReply
from puras_common.bus import publish
from puras_common.envelope import Event
from puras_common.events import JobUsageRecorded, UsageRecorded, UsageRecordedPayload
from puras_common.events.jobs import JobUsagePayload
from puras_common.ids import new_id
from puras_common.logging import get_logger
from pydantic import BaseModel

from puras_pricing.prices import COMPUTE, Pricebook, Quote

if TYPE_CHECKING:
    from nats.js import JetStreamContext

log = get_logger("puras_pricing.metering")


def compute_measures(kind: str, inputs: Mapping[str, Any] | None) -> dict[str, int]:
    """``cpu_ms`` and ``wall_ms`` of a compute usage, as the rows that show it carry them."""
    if kind != "compute" or not inputs:
        return {}
    return {name: int(inputs.get(name, 0)) for name in ("cpu_ms", "wall_ms")}


def usage_events(
    pricebook: Pricebook,
    usage: UsageRecordedPayload,
    *,
    workspace_id: UUID,
    producer: str,
    caused_by: Event | None = None,
) -> tuple[list[Event], Quote]:
    """The events to publish for ``usage`` and its price; raises ``PricingError`` if unpriceable.

    The published ``inputs`` are the ones the call was priced from (defaults applied, only the
    fields that decide the price), so billing prices exactly the same row.
    """
    quote = pricebook.quote_usage(usage)
    charged = not free_compute(usage, quote)
    usage_id = new_id()  # the usage.recorded's id, or the row's own when none is sent
    events: list[Event] = []
    cause = caused_by
    if charged:
        cause = UsageRecorded.new(
            usage.model_copy(update={"inputs": dict(quote.inputs) or None, "unit": quote.unit}),
            producer=producer,
            workspace_id=workspace_id,
            job_id=usage.job_id,
            caused_by=caused_by,
            event_id=usage_id,
        )
        events.append(cause)
    if usage.job_id is not None:
        events.append(
            JobUsageRecorded.new(
                JobUsagePayload(
                    usage_id=usage_id,
                    attempt=usage.attempt,
                    kind=usage.kind,
                    provider=usage.provider,
                    model=usage.model,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    units=quote.units_text,
                    unit=quote.unit,
                    billed_micros=quote.billed_micros,
                    **compute_measures(usage.kind, quote.inputs),
                    ledger=charged,
                    key_id=usage.key_id,
                ),
                producer=producer,
                workspace_id=workspace_id,
                job_id=usage.job_id,
                caused_by=cause,
            )
        )
    return events, quote


def free_compute(usage: UsageRecordedPayload, quote: Quote) -> bool:
    """A job's own compute that costs nothing at the operator's rates: billing has nothing to
    charge, so it is not sent there, and the job's ``job.usage`` alone carries its row."""
    return (
        usage.kind == "compute"
        and quote.billed_micros == 0
        and usage.job_id is not None
        and usage.hold_id is None
    )


def compute_events(
    pricebook: Pricebook,
    command: Event,
    *,
    key_id: UUID | None,
    attempt: int,
    cpu_ms: int,
    wall_ms: int,
    producer: str,
) -> list[Event]:
    """The usage events of one attempt's own compute (``puras/compute``): the CPU time its
    processes used and the wall time it ran, priced at the operator's rates."""
    assert command.workspace_id is not None and command.job_id is not None
    usage = UsageRecordedPayload(
        job_id=command.job_id,
        key_id=key_id,
        attempt=attempt,
        kind="compute",
        provider="puras",
        model=COMPUTE,
        inputs={"cpu_ms": max(0, cpu_ms), "wall_ms": max(0, wall_ms)},
    )
    events, _ = usage_events(
        pricebook, usage, workspace_id=command.workspace_id, producer=producer, caused_by=command
    )
    return events


P = TypeVar("P", bound=BaseModel)


def carried(events: Sequence[Event], outcome: P) -> tuple[P, list[Event]]:
    """An attempt's ``outcome`` (the payload of the event that will end it) carrying the
    attempt's compute, and the events still to publish before the outcome is reported.

    Compute that goes to no ledger is a lone ``job.usage``; the outcome's event takes its row as
    ``compute``, one message fewer for every job. An outcome without room for it (a question)
    leaves it to be published first, as priced compute always is."""
    if (
        len(events) == 1
        and isinstance(usage := events[0], JobUsageRecorded)
        and not usage.payload.ledger
        and "compute" in type(outcome).model_fields
    ):
        return outcome.model_copy(update={"compute": usage.payload}), []
    return outcome, list(events)


async def carry(js: JetStreamContext, compute: Sequence[Event], outcome: P) -> P:
    """``outcome`` carrying the attempt's ``compute`` (:func:`carried`), once what cannot ride
    on it is stored: those events come before the outcome's."""
    outcome, first = carried(compute, outcome)
    await publish(js, first)
    return outcome


def left_behind(outcome: BaseModel, of: Event, *, producer: str) -> list[Event]:
    """The compute ``outcome`` carried, as a ``job.usage`` of its own (nothing if it carried
    none): for an outcome the scheduler did not accept, whose event is never published. The
    row keeps its usage id, so it is folded once whichever way it arrives."""
    usage = getattr(outcome, "compute", None)
    if not isinstance(usage, JobUsagePayload):
        return []
    return [
        JobUsageRecorded.new(
            usage, producer=producer, workspace_id=of.workspace_id, job_id=of.job_id, caused_by=of
        )
    ]


async def report_outcome(
    attempts: AttemptClient,
    js: JetStreamContext,
    command: Event,
    *,
    attempt: int,
    event_type: str,
    outcome: BaseModel,
    producer: str,
) -> CompleteReply:
    """Report an attempt's outcome to the scheduler, which publishes its event. Should the
    scheduler not accept it (a superseded attempt, a job already ended), the compute the outcome
    carried is published on its own: the attempt ran, whether or not its outcome counts."""
    assert command.job_id is not None
    reply = await attempts.complete(command.job_id, attempt, event_type, outcome)
    if not reply.accepted:
        log.warning(
            "the scheduler did not accept the outcome", reason=reply.reason, outcome=event_type
        )
        await publish(js, left_behind(outcome, command, producer=producer))
    return reply
