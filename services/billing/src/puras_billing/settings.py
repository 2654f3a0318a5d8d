"""Billing settings (``PURAS_BILLING_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from typing import ClassVar

from puras_common.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    service: ClassVar[str] = "billing"
