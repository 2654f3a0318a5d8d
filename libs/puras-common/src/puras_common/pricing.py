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

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

import yaml

from puras_common.events.usage import UsageRecordedPayload
from puras_common.models import ModelCatalogue
from puras_common.models import catalogue as llm_catalogue
from puras_common.money import MICROS_PER_USD, ceil_micros, format_usd

DEFAULT_MARGIN_PCT: Final = Decimal("20")
"""``PURAS_MARGIN_PCT`` when unset: billed = upstream × 1.2."""

Unit = Literal["token", "image", "second", "megapixel", "character", "call"]
UsageKind = Literal["llm", "media", "tool"]

_SIZE: Final = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
_SECONDS: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")
_MEASURE_FIELDS: Final = frozenset({"num_images", "duration", "size", "image_size", "video_urls", "video_url"})
"""Raw inputs that the billed quantity or a derived condition is read from."""
_DERIVED: Final = frozenset({"video_reference"})


class PricingError(ValueError):
    """A call that cannot be priced; ``pointer`` locates the culprit in the request."""

    def __init__(self, message: str, *, pointer: str) -> None:
        super().__init__(message)
        self.pointer = pointer


class UnknownModel(PricingError):
    """A slug that is in no catalogue: nothing is ever billed (or run) unpriced."""

    def __init__(self, slug: str, known: list[str]) -> None:
        self.slug = slug
        self.close = difflib.get_close_matches(slug, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(self.close)}?" if self.close else "; GET /v1/pricing lists every slug"
        super().__init__(f"unknown model {slug!r}{hint}", pointer="/model")


class UnpricedInput(PricingError):
    """An input value that no row of the model's rate table covers."""

    def __init__(self, slug: str, name: str, value: Any, expected: list[str]) -> None:
        self.slug, self.name, self.value, self.expected = slug, name, value, expected
        super().__init__(
            f"{slug} has no price for {name}={value!r}; priced values: {', '.join(expected)}",
            pointer=f"/inputs/{name}",
        )


class MeasureRequired(PricingError):
    """The inputs leave the billed quantity open (``duration: auto``) and none was measured."""

    def __init__(self, slug: str, unit: str, why: str) -> None:
        self.slug, self.unit = slug, unit
        super().__init__(f"{slug} bills per {unit}: {why}", pointer="/units")


def exact(text: str | int) -> Fraction:
    """An exact rate from the catalogue: ``"0.25"`` or a fraction of decimals (``"0.364/1.2"``)."""
    try:
        parts = [Fraction(Decimal(part.strip())) for part in str(text).split("/")]
    except InvalidOperation:
        raise ValueError(f"rate {text!r} is not a decimal or a fraction of decimals") from None
    if len(parts) > 2 or (len(parts) == 2 and parts[1] == 0) or any(p < 0 for p in parts):
        raise ValueError(f"rate {text!r} is not a non-negative decimal or fraction of decimals")
    return parts[0] / parts[1] if len(parts) == 2 else parts[0]


def decimal_text(value: Fraction) -> str:
    """A terminating fraction as a decimal string (``Fraction(21, 4)`` -> ``"5.25"``)."""
    if value.denominator == 1:
        return str(value.numerator)
    scale = 0
    while (value * 10**scale).denominator != 1:
        scale += 1
        if scale > 18:  # not terminating: round up at 18 places, never down
            return f"{Decimal(ceil_micros(value * 10**18)) / Decimal(10**18):f}"
    return f"{Decimal((value * 10**scale).numerator) / Decimal(10**scale):f}"


def parse_size(value: Any) -> tuple[int, int] | None:
    """``"1024x768"`` or ``{"width": 1024, "height": 768}`` as (width, height); else None."""
    if isinstance(value, str) and (m := _SIZE.match(value)):
        return int(m.group(1)), int(m.group(2))
    if isinstance(value, Mapping):
        w, h = value.get("width"), value.get("height")
        if isinstance(w, int) and isinstance(h, int) and not isinstance(w, bool) and not isinstance(h, bool):
            return w, h
    return None


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


@dataclass(frozen=True)
class Rate:
    """One row of a rate table: upstream USD per unit, and the inputs it applies to."""

    usd: Fraction
    when: Mapping[str, Any] = field(default_factory=dict)
    variant: str | None = None

    @property
    def label(self) -> str | None:
        """How the row is named on the price list (``high · 1024x1024``, ``audio on``)."""
        if self.variant:
            return self.variant
        return " · ".join(str(v) for v in self.when.values()) or None


@dataclass(frozen=True)
class MediaModel:
    """A media slug: its unit, documented defaults and rate table."""

    slug: str
    kind: str
    title: str
    unit: Unit
    rates: tuple[Rate, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    aliases: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    size_presets: Mapping[str, str] = field(default_factory=dict)
    estimate: bool = False
    """The spec names the model but gives no price: the rate is our estimate (docs/media.md)."""

    @property
    def shape(self) -> str:
        """``conditional`` for a table, else ``per_call`` / ``per_second`` / ``per_megapixel`` /
        ``per_character``."""
        if len(self.rates) > 1:
            return "conditional"
        shapes = {"image": "per_call", "second": "per_second", "megapixel": "per_megapixel", "character": "per_character"}
        return shapes.get(self.unit, "per_call")

    def priced_inputs(self, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
        """The inputs with defaults applied and the table's conditions resolved."""
        priced = {**self.defaults, **(inputs or {})}
        for name, table in self.aliases.items():
            if isinstance(priced.get(name), str) and priced[name] in table:
                priced[name] = table[priced[name]]
        conditions = {key for rate in self.rates for key in rate.when}
        if "size" in conditions:
            priced["size"] = self._size_row(priced)
        if "video_reference" in conditions:
            # Always derived, never taken from the caller: it picks the cheaper rate.
            priced["video_reference"] = bool(priced.get("video_urls") or priced.get("video_url"))
        return priced

    def price_relevant(self, priced: Mapping[str, Any]) -> dict[str, Any]:
        """The part of the priced inputs that decides the price (what a usage event carries)."""
        keys = {*self.defaults, *_MEASURE_FIELDS, *(k for r in self.rates for k in r.when)} - _DERIVED
        return {k: priced[k] for k in priced if k in keys}

    def _size_row(self, priced: Mapping[str, Any]) -> str:
        raw = priced.get("size", priced.get("image_size"))
        name = "size" if "size" in priced else "image_size"
        rows = sorted({r.when["size"] for r in self.rates}, key=lambda s: _pixels(parse_size(s)))
        if isinstance(raw, str) and raw in self.size_presets:
            return self.size_presets[raw]
        size = parse_size(raw)
        if size is None:
            raise UnpricedInput(self.slug, name, raw, [*self.size_presets, "WxH", "{width, height}"])
        for row in rows:
            w, h = parse_size(row)  # type: ignore[misc]
            if size in ((w, h), (h, w)):
                return row
        for row in rows:
            if _pixels(parse_size(row)) >= _pixels(size):
                return row
        raise UnpricedInput(self.slug, name, raw, [f"at most {rows[-1]} ({_pixels(parse_size(rows[-1])):,} pixels)"])

    def rate_for(self, priced: Mapping[str, Any]) -> Rate:
        """The first row whose conditions the priced inputs meet."""
        for key in dict.fromkeys(k for rate in self.rates for k in rate.when):
            allowed = [rate.when[key] for rate in self.rates if key in rate.when]
            value = priced.get(key)
            if isinstance(allowed[0], bool):
                value = _flag(value)
            if value not in allowed:
                raise UnpricedInput(self.slug, key, priced.get(key), [str(a).lower() if isinstance(a, bool) else str(a) for a in dict.fromkeys(allowed)])
        for rate in self.rates:
            if all(_same(priced.get(k), v) for k, v in rate.when.items()):
                return rate
        combination = ", ".join(f"{k}={priced.get(k)!r}" for k in self.rates[0].when)
        raise UnpricedInput(self.slug, "inputs", combination, [r.label or "" for r in self.rates])

    def units(self, priced: Mapping[str, Any], measured: Fraction | None) -> Fraction:
        """How many units the call bills: see the shapes in ``catalog/media.yaml``."""
        if self.unit == "second":
            return self._seconds(priced, measured)
        if self.unit == "character":
            if measured:
                return measured
            text = priced.get("text")
            if not isinstance(text, str):
                raise MeasureRequired(self.slug, "character", "give the text, or the measured number of characters")
            return Fraction(len(text))  # code points, as the platform counts characters
        images = measured if measured else Fraction(_count(self.slug, priced.get("num_images", 1)))
        if self.unit == "megapixel":
            if measured:
                return measured
            size = parse_size(priced.get("image_size")) or parse_size(priced.get("size"))
            if size is None:
                raise MeasureRequired(self.slug, "megapixel", "give image_size as {width, height} or the measured megapixels")
            return Fraction(_pixels(size), 1_000_000) * images
        return images

    def _seconds(self, priced: Mapping[str, Any], measured: Fraction | None) -> Fraction:
        duration = priced.get("duration")
        if duration is None or duration == "auto":
            if not measured:
                raise MeasureRequired(self.slug, "second", "duration is 'auto', so the measured length of the output is billed; none was given")
            return measured
        if isinstance(duration, int | Decimal) and not isinstance(duration, bool):
            seconds = Fraction(duration)
        elif isinstance(duration, float):
            seconds = Fraction(Decimal(repr(duration)))
        elif isinstance(duration, str) and (m := _SECONDS.match(duration)):
            seconds = Fraction(Decimal(m.group(1)))
        else:
            raise UnpricedInput(self.slug, "duration", duration, ["seconds such as 5, \"5\" or \"8s\"", "auto"])
        if seconds <= 0:
            raise UnpricedInput(self.slug, "duration", duration, ["a positive number of seconds"])
        return seconds


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool):
        return _flag(value) is expected
    return value == expected


def _pixels(size: tuple[int, int] | None) -> int:
    return size[0] * size[1] if size else 0


def _count(slug: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise UnpricedInput(slug, "num_images", value, ["a whole number ≥ 1"])


@dataclass(frozen=True)
class Tool:
    """A platform tool an agent calls, priced per call."""

    name: str
    usd: Fraction
    unit: Unit = "call"


@dataclass(frozen=True)
class MediaCatalogue:
    provider: str
    models: Mapping[str, MediaModel]
    tools: Mapping[str, Tool]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> MediaCatalogue:
        """Build from the parsed YAML (also used by tests with made-up models)."""
        models = {
            slug: MediaModel(
                slug=slug,
                kind=row["kind"],
                title=row.get("title", slug),
                unit=row["unit"],
                rates=tuple(Rate(exact(r["usd"]), dict(r.get("when", {})), r.get("variant")) for r in row["rates"]),
                defaults=dict(row.get("defaults", {})),
                aliases={k: dict(v) for k, v in row.get("aliases", {}).items()},
                size_presets=dict(row.get("size_presets", {})),
                estimate=bool(row.get("estimate", False)),
            )
            for slug, row in (data.get("models") or {}).items()
        }
        for model in models.values():
            if not model.rates:
                raise ValueError(f"{model.slug} has no rates")
        tools = {name: Tool(name, exact(row["usd"]), row.get("unit", "call")) for name, row in (data.get("tools") or {}).items()}
        return cls(provider=data.get("provider", ""), models=models, tools=tools)


@cache
def media_catalogue() -> MediaCatalogue:
    """The media catalogue shipped with the platform."""
    return MediaCatalogue.from_data(yaml.safe_load((resources.files("puras_common") / "catalog" / "media.yaml").read_text()))


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
    ) -> None:
        self.margin_pct = margin_pct if isinstance(margin_pct, Fraction) else Fraction(Decimal(str(margin_pct)))
        self.multiplier = parse_margin(self.margin_pct)
        self.models = models or llm_catalogue()
        self.media = media or media_catalogue()

    def slugs(self) -> list[str]:
        """Every priced slug: LLM models, media models, tools."""
        return sorted([*self.models.models, *self.media.models, *self.media.tools])

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
                    raise PricingError(f"{name} must be a whole number ≥ 0, not {n!r}", pointer=f"/{name}")
            # USD per 1M tokens is numerically micros per token.
            upstream = input_tokens * Fraction(llm.input_usd_per_mtok) + output_tokens * Fraction(llm.output_usd_per_mtok)
            return Quote(slug, "llm", "token", Fraction(input_tokens + output_tokens), upstream, self.bill(upstream))
        if (media := self.media.models.get(slug)) is not None:
            priced = media.priced_inputs(inputs)
            rate = media.rate_for(priced)
            units = media.units(priced, measured)
            upstream = rate.usd * MICROS_PER_USD * units
            shown = media.price_relevant(priced)
            return Quote(slug, "media", media.unit, units, upstream, self.bill(upstream), rate.label, shown)
        if (tool := self.media.tools.get(slug)) is not None:
            units = measured or Fraction(1)
            upstream = tool.usd * MICROS_PER_USD * units
            return Quote(slug, "tool", tool.unit, units, upstream, self.bill(upstream))
        raise UnknownModel(slug, self.slugs())

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
                {"name": t.name, "unit": t.unit, **self._price(t.usd)} for t in self.media.tools.values()
            ],
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
            "rates": [{"variant": r.label, "when": dict(r.when), **self._price(r.usd)} for r in m.rates],
            "default_rate": {"variant": default.label, **self._price(default.usd)},
        }


def _measure(value: Fraction | Decimal | int | str | None) -> Fraction | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise PricingError(f"measured units {value!r} must be a decimal string, not a float", pointer="/units")
    try:
        measured = value if isinstance(value, Fraction) else Fraction(Decimal(str(value)))
    except InvalidOperation:
        raise PricingError(f"measured units {value!r} are not a decimal number", pointer="/units") from None
    if measured < 0:
        raise PricingError(f"measured units {value} are negative", pointer="/units")
    return measured or None


def quote(slug: str, inputs: Mapping[str, Any] | None = None, *, margin_pct: str | int | Decimal = DEFAULT_MARGIN_PCT, **measures: Any) -> Quote:
    """Price one call with the shipped catalogues: ``quote("bytedance/seedance-2-t2v",
    {"duration": "5"}).billed_micros == 1_820_000``."""
    return pricebook(margin_pct).quote(slug, inputs, **measures)


def pricebook(margin_pct: str | int | Decimal = DEFAULT_MARGIN_PCT) -> Pricebook:
    """The shipped catalogues at ``margin_pct``, built once per margin."""
    return _pricebook(str(margin_pct))


@cache
def _pricebook(margin_pct: str) -> Pricebook:
    return Pricebook(margin_pct)
