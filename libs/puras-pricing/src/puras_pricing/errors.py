"""The errors of pricing: each says what could not be priced and where (a JSON pointer into
the request), so the gateway answers a 4xx naming the culprit."""

from __future__ import annotations

import difflib
from typing import Any


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
        hint = (
            f"; did you mean {', '.join(self.close)}?"
            if self.close
            else "; GET /v1/pricing lists every slug"
        )
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
