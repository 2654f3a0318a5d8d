"""Events of the USAGE stream: metered consumption, priced and charged by billing."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from uuid import UUID

from puras_common import streams
from puras_common.envelope import Event, Payload


class UsageRecordedPayload(Payload):
    """What one upstream call consumed, in raw measures; billing prices it with the registry.

    The event id is the usage id: billing charges each usage event at most once.
    """

    job_id: UUID | None = None
    key_id: UUID | None = None
    attempt: int | None = None
    kind: Literal["llm", "media", "tool", "compute"]
    provider: str
    model: str
    """The public slug (``claude/sonnet-4-7``, ``bytedance/seedance-2-t2v``)."""
    input_tokens: int = 0
    output_tokens: int = 0
    units: str = "0"
    """A decimal string: images, seconds of output, megapixels, characters…"""
    unit: str = "token"
    inputs: dict[str, Any] | None = None
    """For input-conditional rates: the inputs the call was priced from, defaults applied."""
    request_id: str | None = None
    """The upstream's id for the call, for reconciliation."""
    hold_id: UUID | None = None
    """The budget hold taken before the call (:mod:`puras_common.budgets`); charging this
    usage settles it."""


class UsageRecorded(Event):
    """An upstream call (a model step, a media generation) was made on behalf of a job."""

    stream: ClassVar = streams.USAGE
    subject_pattern: ClassVar = "usage.{workspace_id}.recorded"
    type: Literal["usage.recorded"] = "usage.recorded"
    payload: UsageRecordedPayload
