"""Money is an integer number of micros: 1 USD = 1_000_000 micros. No floats, anywhere."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Final

from pydantic import Field

from puras_common.numbers import NumberError, client_decimal

MICROS_PER_USD: Final = 1_000_000

Micros = Annotated[int, Field(strict=True)]
"""An amount in micros; strict, so a float (even 1.0) is refused at validation."""


class MoneyError(ValueError):
    """An amount that cannot be represented exactly in micros."""


def usd_to_micros(usd: str | int | Decimal) -> int:
    """Parse a USD amount ("10", "0.25", Decimal("1.5")) into exact micros.

    Floats are refused: they cannot carry an exact amount. An amount finer than one micro is an
    error rather than a silent rounding.
    """
    if isinstance(usd, float):
        raise MoneyError(f"refusing float amount {usd!r}: pass a decimal string")
    try:
        amount = client_decimal(usd, pointer="", what="the amount of USD")
    except NumberError as exc:
        raise MoneyError(exc.message) from None
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise MoneyError(f"{usd} USD is not a whole number of micros (1 micro = 0.000001 USD)")
    return int(micros)


def ceil_micros(amount: Fraction) -> int:
    """Round an exact amount of micros up to a whole micro (the platform never under-bills)."""
    return -((-amount.numerator) // amount.denominator)


def format_usd(micros: int) -> str:
    """``1_820_000`` -> ``"1.82"``: a display string, never fed back into arithmetic."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    text = f"{whole}.{frac:06d}".rstrip("0")
    if text.endswith("."):
        text += "00"
    elif len(text.split(".")[1]) == 1:
        text += "0"
    return sign + text
