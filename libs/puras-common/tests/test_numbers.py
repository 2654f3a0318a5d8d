"""Client numbers are bounded in length, digits and exponent before any arithmetic."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from puras_common.money import MoneyError, usd_to_micros
from puras_common.numbers import NumberError, client_decimal, client_fraction


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("1e30000000", "out of range"),
        ("1e-30000000", "out of range"),
        (Decimal("1e999999999"), "out of range"),
        ("9" * 31, "significant digits"),
        ("1" * 65, "characters long"),
        (10**30, "too large"),
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        ("1/3", "not a decimal number"),
        (1.5, "not float"),
        (True, "not bool"),
    ],
)
def test_unbounded_numbers_are_refused_with_their_pointer(value: object, needle: str) -> None:
    with pytest.raises(NumberError) as caught:
        client_decimal(value, pointer="/units", what="measured units")
    assert needle in caught.value.message and caught.value.pointer == "/units"


def test_bounded_numbers_pass_exactly() -> None:
    assert client_fraction("0.25", pointer="") == Fraction(1, 4)
    assert client_fraction("1e18", pointer="") == 10**18
    assert client_fraction(5.5, pointer="", floats=True) == Fraction(11, 2)
    assert client_decimal("0e30000000", pointer="") == 0
    assert client_decimal(" 12 ", pointer="") == 12


def test_an_amount_of_usd_is_bounded_before_it_becomes_micros() -> None:
    assert usd_to_micros("1.5") == 1_500_000
    with pytest.raises(MoneyError, match="out of range"):
        usd_to_micros("1e30000000")
