"""Events of webhook endpoints, on the PLATFORM stream: ``webhook.<workspace_id>.<verb>``."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from puras_common import streams
from puras_common.envelope import Event, Payload


class WebhookDisabledPayload(Payload):
    endpoint_id: UUID
    url: str
    reason: str
    failures: int
    """Attempts that failed in a row."""
    failing_since: datetime


class WebhookDisabled(Event):
    """An endpoint kept failing and was disabled: nothing more is sent to it until it is
    enabled again (its pending deliveries failed)."""

    stream: ClassVar = streams.PLATFORM
    subject_pattern: ClassVar = "webhook.{workspace_id}.disabled"
    type: Literal["webhook.disabled"] = "webhook.disabled"
    payload: WebhookDisabledPayload
