"""Pricing: what one upstream call costs, from the catalogues and the platform margin.

Billing, the agent runner and the media library all price through this module, so a quote, the
``billed_micros`` a runner reports and the ledger entry agree to the micro.

The catalogues are data (``catalog/models.yaml``, ``catalog/media.yaml``) holding **upstream**
cost as exact rationals. A row is billed at ``upstream × units × (1 + margin_pct/100)``,
computed with :class:`~fractions.Fraction` and rounded up to a whole micro once per usage row,
so that with the default 20 % margin the public prices are exactly those of the spec (a 5 s
``bytedance/seedance-2-t2v`` clip: 1,820,000 micros). Inputs are priced after the model's
documented defaults are applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cache
from math import lcm
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Final, Literal

from puras_common.events.usage import UsageRecordedPayload
from puras_common.money import MICROS_PER_USD, ceil_micros, format_usd
from puras_common.numbers import NumberError, client_fraction
from puras_common.settings import ServiceSettings

from puras_pricing.errors import PricingError, UnknownModel
from puras_pricing.media import MediaCatalogue, MediaModel, Unit, decimal_text, media_catalogue
from puras_pricing.models import Model, ModelCatalogue
from puras_pricing.models import catalogue as llm_catalogue

DEFAULT_MARGIN_PCT: Final = Decimal("20")
"""``PURAS_MARGIN_PCT`` when unset: billed = upstream × 1.2."""

UsageKind = Literal["llm", "media", "tool", "compute"]

MEDIA_QUOTES_REMEMBERED: Final = 4096
"""Media quotes a pricebook keeps by (slug, inputs, measured units): a media call's price
depends on nothing else, and a deployment calls few distinct shapes, so billing prices each
shape once rather than once per usage row. The oldest is forgotten first beyond this."""

COMPUTE: Final = "puras/compute"
"""The slug of a job's own compute: its processes' CPU time and the attempt's wall time."""


@dataclass(frozen=True)
class ComputeRates:
    """The operator's price of compute, in whole micros (no margin: it is no upstream's cost).
    Both default to zero: compute is metered, and free unless the operator prices it."""

    micros_per_cpu_second: int = 0
    micros_per_wall_second: int = 0

    def __post_init__(self) -> None:
        for name in ("micros_per_cpu_second", "micros_per_wall_second"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"compute rate {name} must be a whole number ≥ 0, not {value!r}")

    def billed_micros(self, cpu_ms: int, wall_ms: int) -> int:
        """Rounded up once, to a whole micro."""
        thousandths = cpu_ms * self.micros_per_cpu_second + wall_ms * self.micros_per_wall_second
        return -(-thousandths // 1000)


@dataclass(frozen=True)
class Quote:
    """What one call costs: the measure, the row of the table it hit, and the amounts."""

    slug: str
    kind: UsageKind
    unit: Unit
    units: Fraction
    upstream_micros: Fraction
    """Exact, before margin and rounding."""
    billed_micros: int
    variant: str | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)
    """The inputs the call was priced from, defaults applied."""

    @property
    def units_text(self) -> str:
        return decimal_text(self.units)


def parse_margin(pct: str | int | Decimal | Fraction) -> Fraction:
    """``"20"`` -> 1.2 as an exact multiplier; negative margins are refused."""
    if isinstance(pct, float):
        raise ValueError(f"margin {pct!r} must be a decimal string, not a float")
    value = pct if isinstance(pct, Fraction) else Fraction(Decimal(str(pct)))
    if value < 0:
        raise ValueError(f"margin {pct}% is negative")
    return 1 + value / 100


class Pricebook:
    """The catalogues and one margin: quotes, usage pricing and the public price list."""

    def __init__(
        self,
        margin_pct: str | int | Decimal | Fraction = DEFAULT_MARGIN_PCT,
        *,
        models: ModelCatalogue | None = None,
        media: MediaCatalogue | None = None,
        compute: ComputeRates | None = None,
    ) -> None:
        self.margin_pct = (
            margin_pct if isinstance(margin_pct, Fraction) else Fraction(Decimal(str(margin_pct)))
        )
        self.multiplier = parse_margin(self.margin_pct)
        self.models = models or llm_catalogue()
        self.media = media or media_catalogue()
        self.compute = compute or ComputeRates()
        self._media_quotes: dict[tuple[Any, ...], Quote] = {}
        self._llm_rates: dict[str, tuple[int, int, int]] = {}

    def slugs(self) -> list[str]:
        """Every priced slug: LLM models, media models, tools, compute."""
        return sorted([*self.models.models, *self.media.models, *self.media.tools, COMPUTE])

    def bill(self, upstream_micros: Fraction) -> int:
        """Upstream × (1 + margin), rounded up to a whole micro: done once per usage row."""
        return ceil_micros(upstream_micros * self.multiplier)

    def quote(
        self,
        slug: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        measured_units: Fraction | Decimal | int | str | None = None,
    ) -> Quote:
        """Price one call of ``slug``. LLMs are priced from tokens; media from its inputs, or
        from ``measured_units`` where the inputs leave the quantity open (``duration: auto``,
        images produced)."""
        measured = _measure(measured_units)
        if (llm := self.models.get(slug)) is not None:
            for name, n in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
                if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                    raise PricingError(
                        f"{name} must be a whole number ≥ 0, not {n!r}", pointer=f"/{name}"
                    )
            return self._llm(llm, input_tokens, output_tokens)
        if (media := self.media.models.get(slug)) is not None:
            key = _media_key(slug, inputs, measured)
            if key is not None and (known := self._media_quotes.get(key)) is not None:
                return known
            quote = self._media(media, inputs, measured)
            if key is not None:
                if len(self._media_quotes) >= MEDIA_QUOTES_REMEMBERED:
                    del self._media_quotes[next(iter(self._media_quotes))]
                self._media_quotes[key] = quote
            return quote
        if (tool := self.media.tools.get(slug)) is not None:
            units = measured or Fraction(1)
            upstream = tool.usd * MICROS_PER_USD * units
            return Quote(slug, "tool", tool.unit, units, upstream, self.bill(upstream))
        if slug == COMPUTE:
            return self._compute(inputs or {})
        raise UnknownModel(slug, self.slugs())

    def _llm(self, llm: Model, input_tokens: int, output_tokens: int) -> Quote:
        """Tokens at the model's prices, in whole numbers over one denominator per model (the
        same exact amounts as fractions, without a fraction's arithmetic per row)."""
        rates = self._llm_rates.get(llm.slug)
        if rates is None:
            per_input, per_output = _micros_per_token(llm)
            den = lcm(per_input.denominator, per_output.denominator)
            rates = (int(per_input * den), int(per_output * den), den)
            self._llm_rates[llm.slug] = rates
        per_input_n, per_output_n, den = rates
        upstream = input_tokens * per_input_n + output_tokens * per_output_n
        scale = self.multiplier
        billed = -(-(upstream * scale.numerator) // (den * scale.denominator))
        return Quote(
            llm.slug,
            "llm",
            "token",
            Fraction(input_tokens + output_tokens),
            Fraction(upstream, den),
            billed,
        )

    def _media(
        self, media: MediaModel, inputs: Mapping[str, Any] | None, measured: Fraction | None
    ) -> Quote:
        priced = media.priced_inputs(inputs)
        rate = media.rate_for(priced)
        units = media.units(priced, measured)
        upstream = rate.usd * MICROS_PER_USD * units
        shown = MappingProxyType(media.price_relevant(priced))
        return Quote(
            media.slug, "media", media.unit, units, upstream, self.bill(upstream), rate.label, shown
        )

    def _compute(self, inputs: Mapping[str, Any]) -> Quote:
        """``{"cpu_ms", "wall_ms"}`` at the operator's rates; the units are CPU seconds."""
        measures = {}
        for name in ("cpu_ms", "wall_ms"):
            n = inputs.get(name, 0)
            if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 10**15:
                raise PricingError(
                    f"{name} must be a whole number ≥ 0, not {n!r}", pointer=f"/inputs/{name}"
                )
            measures[name] = n
        billed = self.compute.billed_micros(measures["cpu_ms"], measures["wall_ms"])
        units = Fraction(measures["cpu_ms"], 1000)
        return Quote(
            COMPUTE, "compute", "cpu_second", units, Fraction(billed), billed, None, measures
        )

    def quote_usage(self, usage: UsageRecordedPayload) -> Quote:
        """Price a ``usage.recorded`` payload: its raw measures and the inputs it was made with."""
        return self.quote(
            usage.model,
            usage.inputs,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            measured_units=usage.units,
        )

    def price_list(self) -> dict[str, Any]:
        """The public prices (margin applied), as ``GET /v1/pricing`` shows them."""
        return {
            "currency": "USD",
            "margin_pct": decimal_text(self.margin_pct),
            "default_model": self.models.default,
            "models": [self._llm_row(slug) for slug in self.models.slugs()],
            "media": [self._media_row(m) for m in self.media.models.values()],
            "tools": [
                {"name": t.name, "unit": t.unit, **self._price(t.usd)}
                for t in self.media.tools.values()
            ],
            "compute": {
                "slug": COMPUTE,
                "micros_per_cpu_second": self.compute.micros_per_cpu_second,
                "micros_per_wall_second": self.compute.micros_per_wall_second,
            },
        }

    def _price(self, upstream_usd: Fraction) -> dict[str, Any]:
        micros = ceil_micros(upstream_usd * MICROS_PER_USD * self.multiplier)
        return {"usd": format_usd(micros), "micros": micros}

    def _llm_row(self, slug: str) -> dict[str, Any]:
        m = self.models.models[slug]
        return {
            "slug": slug,
            "kind": "llm",
            "provider": m.provider,
            "input_usd_per_mtok": self._price(Fraction(m.input_usd_per_mtok))["usd"],
            "output_usd_per_mtok": self._price(Fraction(m.output_usd_per_mtok))["usd"],
            "vision": m.vision,
            "pdf": m.pdf,
            "default": slug == self.models.default,
        }

    def _media_row(self, m: MediaModel) -> dict[str, Any]:
        default = m.rate_for(m.priced_inputs({}))
        return {
            "slug": m.slug,
            "kind": m.kind,
            "title": m.title,
            "shape": m.shape,
            "unit": m.unit,
            "estimate": m.estimate,
            "defaults": dict(m.defaults),
            "rates": [
                {"variant": r.label, "when": dict(r.when), **self._price(r.usd)} for r in m.rates
            ],
            "default_rate": {"variant": default.label, **self._price(default.usd)},
        }


def _media_key(
    slug: str, inputs: Mapping[str, Any] | None, measured: Fraction | None
) -> tuple[Any, ...] | None:
    """What a media quote depends on, as a dictionary key; None (priced afresh, not kept) for
    inputs that are not a few short scalars, such as a call's whole inputs with its prompt, so
    the memo stays small whatever a tenant sends. Each value's type is part of the key: ``1``,
    ``1.0`` and ``True`` are equal in Python, not to the catalogue."""
    if not inputs:
        return (slug, measured)
    if len(inputs) > _KEY_ITEMS:
        return None
    items = []
    for name, value in inputs.items():
        kind = type(value)
        if not (
            value is None
            or kind in (int, float, bool)
            or (kind is str and len(value) <= _KEY_TEXT and len(name) <= _KEY_TEXT)
        ):
            return None
        items.append((name, kind, value))
    items.sort(key=itemgetter(0))
    return (slug, measured, *items)


_KEY_ITEMS: Final = 16
_KEY_TEXT: Final = 64


def _measure(value: Fraction | Decimal | int | str | None) -> Fraction | None:
    if value is None or value == "0" or (type(value) is int and value == 0):
        return None
    if isinstance(value, float):
        raise PricingError(
            f"measured units {value!r} must be a decimal string, not a float", pointer="/units"
        )
    try:
        measured = client_fraction(value, pointer="/units", what="measured units")
    except NumberError as exc:
        raise PricingError(exc.message, pointer=exc.pointer) from None
    if measured < 0:
        raise PricingError(f"measured units {value} are negative", pointer="/units")
    return measured or None


def quote(
    slug: str,
    inputs: Mapping[str, Any] | None = None,
    *,
    margin_pct: str | int | Decimal = DEFAULT_MARGIN_PCT,
    **measures: Any,
) -> Quote:
    """Price one call with the shipped catalogues: ``quote("bytedance/seedance-2-t2v",
    {"duration": "5"}).billed_micros == 1_820_000``."""
    return pricebook(margin_pct).quote(slug, inputs, **measures)


def pricebook(
    margin_pct: str | int | Decimal = DEFAULT_MARGIN_PCT, compute: ComputeRates | None = None
) -> Pricebook:
    """The shipped catalogues at ``margin_pct`` and the compute rates, built once per pair."""
    return _pricebook(str(margin_pct), compute or ComputeRates())


def settings_pricebook(settings: ServiceSettings) -> Pricebook:
    """The pricebook a service's settings name: its margin (where it has one) and the compute
    rates every service reads."""
    margin: Decimal = getattr(settings, "margin_pct", DEFAULT_MARGIN_PCT)
    return pricebook(
        margin,
        ComputeRates(
            settings.compute_micros_per_cpu_second, settings.compute_micros_per_wall_second
        ),
    )


@cache
def _pricebook(margin_pct: str, compute: ComputeRates) -> Pricebook:
    return Pricebook(margin_pct, compute=compute)


@cache
def _micros_per_token(llm: Model) -> tuple[Fraction, Fraction]:
    """A model's input and output prices as exact micros per token (USD per 1M tokens is
    numerically micros per token), converted from the catalogue's decimals once."""
    return Fraction(llm.input_usd_per_mtok), Fraction(llm.output_usd_per_mtok)
