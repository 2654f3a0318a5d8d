"""Pricing: the model and media catalogues, what one upstream call costs at the platform margin,
and the usage events a runner publishes for a billable call.

Business logic kept apart from the contracts in :mod:`puras_common`: billing, the agent runner,
the media library and the gateway's price list all price through :class:`Pricebook`, so a quote,
the ``billed_micros`` a runner reports and the ledger entry agree to the micro.
"""

from puras_pricing.errors import MeasureRequired, PricingError, UnknownModel, UnpricedInput
from puras_pricing.media import MediaCatalogue, MediaModel, decimal_text, exact, media_catalogue
from puras_pricing.metering import (
    carried,
    carry,
    compute_events,
    compute_measures,
    left_behind,
    report_outcome,
    usage_events,
)
from puras_pricing.prices import (
    COMPUTE,
    DEFAULT_MARGIN_PCT,
    ComputeRates,
    Pricebook,
    Quote,
    pricebook,
    quote,
    settings_pricebook,
)

__all__ = [
    "COMPUTE",
    "DEFAULT_MARGIN_PCT",
    "ComputeRates",
    "MeasureRequired",
    "MediaCatalogue",
    "MediaModel",
    "Pricebook",
    "PricingError",
    "Quote",
    "UnknownModel",
    "UnpricedInput",
    "carried",
    "carry",
    "compute_events",
    "compute_measures",
    "decimal_text",
    "exact",
    "left_behind",
    "media_catalogue",
    "pricebook",
    "quote",
    "report_outcome",
    "settings_pricebook",
    "usage_events",
]
