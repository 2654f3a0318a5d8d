"""Numbers a client sends are bounded in digits and exponent before any arithmetic.

``Decimal("1e30000000")`` is cheap to hold, but turning it into a ``Fraction`` or an ``int``
builds a thirty-million-digit integer: one such number in a request keeps a process busy for
minutes. Every decimal a client controls (measured units, durations, amounts of USD) passes
through :func:`client_decimal` or :func:`client_fraction` first, and is refused with the
pointer it came from.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Final

MAX_NUMBER_CHARS: Final = 64
"""The longest text accepted as a number."""
MAX_SIGNIFICANT_DIGITS: Final = 30
MAX_EXPONENT: Final = 18
"""A client number's magnitude lies between 10**-18 and 10**18 (or is zero)."""


class NumberError(ValueError):
    """A client number that is not a number, or is too long, too large or too fine."""

    def __init__(self, message: str, *, pointer: str) -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer


def client_decimal(
    value: object, *, pointer: str, what: str = "the number", floats: bool = False
) -> Decimal:
    """``value`` (a decimal string, an int or a Decimal) as a bounded, finite Decimal.

    Booleans are refused, and so are floats (they cannot carry an exact amount) unless
    ``floats`` admits them for a quantity where their shortest repr is meant (``5.5`` seconds).
    """
    if floats and isinstance(value, float):
        value = repr(value)
    if isinstance(value, bool | float):
        raise NumberError(
            f"{what} must be a decimal string, not {type(value).__name__} {value!r}",
            pointer=pointer,
        )
    if isinstance(value, int):
        # int -> str itself is quadratic in the digits: check the size by bits first.
        if value.bit_length() > 64:
            raise NumberError(f"{what} is too large: at most 10^{MAX_EXPONENT}", pointer=pointer)
        value = str(value)
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_CHARS:
            raise NumberError(
                f"{what} is {len(value)} characters long; the limit is {MAX_NUMBER_CHARS}",
                pointer=pointer,
            )
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise NumberError(
                f"{what} {value!r} is not a decimal number", pointer=pointer
            ) from None
    elif isinstance(value, Decimal):
        number = value
    else:
        raise NumberError(
            f"{what} must be a decimal string, not {type(value).__name__}", pointer=pointer
        )
    if not number.is_finite():
        raise NumberError(f"{what} {value!r} is not a finite number", pointer=pointer)
    if number.is_zero():
        return number
    digits = len(number.as_tuple().digits)
    if digits > MAX_SIGNIFICANT_DIGITS:
        raise NumberError(
            f"{what} has {digits} significant digits; the limit is {MAX_SIGNIFICANT_DIGITS}",
            pointer=pointer,
        )
    if not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
        raise NumberError(
            f"{what} {value!r} is out of range: its magnitude must lie between "
            f"10^-{MAX_EXPONENT} and 10^{MAX_EXPONENT}",
            pointer=pointer,
        )
    return number


def client_fraction(
    value: object, *, pointer: str, what: str = "the number", floats: bool = False
) -> Fraction:
    """``value`` bounded by :func:`client_decimal`, as an exact Fraction."""
    if isinstance(value, Fraction):
        return value
    return Fraction(client_decimal(value, pointer=pointer, what=what, floats=floats))


__all__ = ["MAX_EXPONENT", "NumberError", "client_decimal", "client_fraction"]
