"""Events of the LEDGER stream, emitted by billing."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from puras_common import streams
from puras_common.envelope import Event, Payload
from puras_common.money import Micros


class BilledUsage(Payload):
    """One usage row as billing priced it: the raw measures and what they cost."""

    kind: Literal["llm", "media", "tool", "compute"]
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    units: str
    """The billed quantity, a decimal string (tokens, images, seconds…)."""
    unit: str
    billed_micros: Micros
    attempt: int | None = None
    variant: str | None = None
    """The row of an input-conditional rate table that was billed (``audio on``)."""
    recorded_at: datetime
    """When the upstream call was recorded: the UTC day of a key's spend."""
    cpu_ms: int | None = None
    """For ``compute``: the CPU time the attempt's processes used, in milliseconds."""
    wall_ms: int | None = None
    """For ``compute``: the attempt's wall time, in milliseconds."""


class LedgerPostedPayload(Payload):
    entry_id: UUID
    kind: Literal["grant", "charge", "refund", "adjustment"]
    amount_micros: Micros
    """Signed: grants and refunds are positive, charges negative."""
    balance_micros: Micros
    """The workspace's balance right after this entry."""
    version: int
    """How many entries the workspace's ledger holds after this one: orders balance changes."""
    job_id: UUID | None = None
    source_event_id: UUID
    """The grant or usage event this entry answers; unique in the ledger."""
    key_id: UUID | None = None
    """The API key the charged job was submitted with, for spend per key."""
    usage: BilledUsage | None = None
    """For a charge: the usage row it bills (its id is ``source_event_id``)."""


class LedgerPosted(Event):
    """One ledger entry was appended."""

    stream: ClassVar = streams.LEDGER
    subject_pattern: ClassVar = "ledger.{workspace_id}.posted"
    type: Literal["ledger.posted"] = "ledger.posted"
    payload: LedgerPostedPayload


class BalanceChangedPayload(Payload):
    balance_micros: Micros
    version: int
    """A projection keeps the balance with the highest version it has seen."""


class BalanceChanged(Event):
    """A workspace's balance moved."""

    stream: ClassVar = streams.LEDGER
    subject_pattern: ClassVar = "balance.{workspace_id}.changed"
    type: Literal["balance.changed"] = "balance.changed"
    payload: BalanceChangedPayload
