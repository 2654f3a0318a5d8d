"""Billing settings (``PURAS_BILLING_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from puras_common.settings import ServiceSettings
from puras_pricing import DEFAULT_MARGIN_PCT
from pydantic import Field


class BillingSettings(ServiceSettings):
    service: ClassVar[str] = "billing"

    margin_pct: Decimal = Field(default=DEFAULT_MARGIN_PCT, ge=0)
    """``PURAS_MARGIN_PCT``: billed = upstream × (1 + margin/100). The runners and the gateway
    read the same variable, so every price the platform shows is the one billing charges."""
    usage_batch: int = 256
    """Usage events charged per transaction."""
