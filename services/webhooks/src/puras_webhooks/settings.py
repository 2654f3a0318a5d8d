"""Webhooks service settings (``PURAS_WEBHOOKS_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from typing import ClassVar

from puras_common.settings import ServiceSettings
from pydantic import Field, field_validator

DEFAULT_RETRIES = "10,40,160,640,2560,10240,40960,43200"
"""Seconds before each retry: ×4 each time from 10 s, the last capped at 12 h — nine attempts
over about 27 hours."""


class WebhooksSettings(ServiceSettings):
    service: ClassVar[str] = "webhooks"

    ssrf_allow: str = ""
    """Networks (``10.0.0.0/8,fd00::/8``) or ``*`` that endpoints may be in besides public
    addresses (``PURAS_SSRF_ALLOW`` for every service, or ``PURAS_WEBHOOKS_SSRF_ALLOW``)."""
    retry_schedule: str = DEFAULT_RETRIES
    """Seconds to wait before each retry after a failed attempt, comma-separated."""
    timeout_seconds: float = Field(default=15.0, gt=0)
    """How long a receiver may take to answer one attempt."""
    concurrency: int = Field(default=64, ge=1)
    """Attempts in flight at once in one process."""
    lease_seconds: float = Field(default=60.0, gt=0)
    """How long a claimed delivery stays with its sender before another may take it."""
    disable_after_seconds: float = Field(default=86400.0, ge=0)
    disable_after_failures: int = Field(default=10, ge=1)
    """An endpoint is disabled once its attempts have failed for this long *and* this many
    times in a row."""
    secret_overlap_seconds: float = Field(default=86400.0, ge=0)
    """After a rotation the previous secret still signs (beside the new one) this long, so
    receivers can switch without losing a delivery."""
    max_endpoints_per_workspace: int = Field(default=20, ge=1)

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        retries(value)
        return value

    @property
    def retries(self) -> tuple[float, ...]:
        return retries(self.retry_schedule)


def retries(text: str) -> tuple[float, ...]:
    """The retry schedule as seconds; each must be a positive number."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"retry_schedule must be seconds separated by commas, not {text!r}"
        ) from None
    if not delays or any(d <= 0 for d in delays):
        raise ValueError("retry_schedule needs at least one delay, each above 0 seconds")
    return delays
