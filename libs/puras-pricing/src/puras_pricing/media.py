"""The media catalogue: upstream rates per model as exact rationals, the models' documented
defaults, and how many units one call bills.

Data, not code: ``catalog/media.yaml``. A row is billed at ``upstream × units × (1 +
margin_pct/100)`` by :class:`~puras_pricing.pricebook.Pricebook`; this module only knows the
rates and the measures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

import yaml
from puras_common.money import ceil_micros
from puras_common.numbers import NumberError, client_fraction

from puras_pricing.errors import MeasureRequired, UnpricedInput

Unit = Literal["token", "image", "second", "megapixel", "character", "call", "cpu_second"]

_SIZE: Final = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
_SECONDS: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")
_MEASURE_FIELDS: Final = frozenset(
    {"num_images", "duration", "size", "image_size", "video_urls", "video_url"}
)
"""Raw inputs that the billed quantity or a derived condition is read from."""
_DERIVED: Final = frozenset({"video_reference"})


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
        if (
            isinstance(w, int)
            and isinstance(h, int)
            and not isinstance(w, bool)
            and not isinstance(h, bool)
        ):
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
        shapes = {
            "image": "per_call",
            "second": "per_second",
            "megapixel": "per_megapixel",
            "character": "per_character",
        }
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
        keys = {
            *self.defaults,
            *_MEASURE_FIELDS,
            *(k for r in self.rates for k in r.when),
        } - _DERIVED
        return {k: priced[k] for k in priced if k in keys}

    def _size_row(self, priced: Mapping[str, Any]) -> str:
        raw = priced.get("size", priced.get("image_size"))
        name = "size" if "size" in priced else "image_size"
        rows: list[str] = sorted(
            {r.when["size"] for r in self.rates}, key=lambda s: _pixels(parse_size(s))
        )
        if isinstance(raw, str) and raw in self.size_presets:
            return self.size_presets[raw]
        size = parse_size(raw)
        if size is None:
            raise UnpricedInput(
                self.slug, name, raw, [*self.size_presets, "WxH", "{width, height}"]
            )
        for row in rows:
            if (bounds := parse_size(row)) is not None and size in (bounds, bounds[::-1]):
                return row
        for row in rows:
            if _pixels(parse_size(row)) >= _pixels(size):
                return row
        raise UnpricedInput(
            self.slug, name, raw, [f"at most {rows[-1]} ({_pixels(parse_size(rows[-1])):,} pixels)"]
        )

    def rate_for(self, priced: Mapping[str, Any]) -> Rate:
        """The first row whose conditions the priced inputs meet."""
        for key in dict.fromkeys(k for rate in self.rates for k in rate.when):
            allowed = [rate.when[key] for rate in self.rates if key in rate.when]
            value = priced.get(key)
            if isinstance(allowed[0], bool):
                value = _flag(value)
            if value not in allowed:
                raise UnpricedInput(
                    self.slug,
                    key,
                    priced.get(key),
                    [
                        str(a).lower() if isinstance(a, bool) else str(a)
                        for a in dict.fromkeys(allowed)
                    ],
                )
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
                raise MeasureRequired(
                    self.slug, "character", "give the text, or the measured number of characters"
                )
            return Fraction(len(text))  # code points, as the platform counts characters
        images = measured if measured else Fraction(_count(self.slug, priced.get("num_images", 1)))
        if self.unit == "megapixel":
            if measured:
                return measured
            size = parse_size(priced.get("image_size")) or parse_size(priced.get("size"))
            if size is None:
                raise MeasureRequired(
                    self.slug,
                    "megapixel",
                    "give image_size as {width, height} or the measured megapixels",
                )
            return Fraction(_pixels(size), 1_000_000) * images
        return images

    def _seconds(self, priced: Mapping[str, Any], measured: Fraction | None) -> Fraction:
        duration = priced.get("duration")
        if duration is None or duration == "auto":
            if not measured:
                raise MeasureRequired(
                    self.slug,
                    "second",
                    "duration is 'auto', so the measured length of the output is billed; none was given",
                )
            return measured
        try:
            if isinstance(duration, int | Decimal | float) and not isinstance(duration, bool):
                seconds = client_fraction(duration, pointer="/inputs/duration", floats=True)
            elif isinstance(duration, str) and (m := _SECONDS.match(duration)):
                seconds = client_fraction(m.group(1), pointer="/inputs/duration")
            else:
                raise UnpricedInput(
                    self.slug, "duration", duration, ['seconds such as 5, "5" or "8s"', "auto"]
                )
        except NumberError:
            raise UnpricedInput(
                self.slug, "duration", duration, ["a number of seconds below 10^18"]
            ) from None
        if seconds <= 0:
            raise UnpricedInput(self.slug, "duration", duration, ["a positive number of seconds"])
        return seconds


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool):
        return _flag(value) is expected
    return bool(value == expected)


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
                rates=tuple(
                    Rate(exact(r["usd"]), dict(r.get("when", {})), r.get("variant"))
                    for r in row["rates"]
                ),
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
        tools = {
            name: Tool(name, exact(row["usd"]), row.get("unit", "call"))
            for name, row in (data.get("tools") or {}).items()
        }
        return cls(provider=data.get("provider", ""), models=models, tools=tools)


@cache
def media_catalogue() -> MediaCatalogue:
    """The media catalogue shipped with the platform."""
    return MediaCatalogue.from_data(
        yaml.safe_load((resources.files("puras_pricing") / "catalog" / "media.yaml").read_text())
    )
