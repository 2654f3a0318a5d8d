from fractions import Fraction

import pytest
from puras_common.money import Micros, MoneyError, ceil_micros, format_usd, usd_to_micros
from pydantic import BaseModel, ValidationError


def test_usd_amounts_become_exact_micros() -> None:
    assert usd_to_micros("10") == 10_000_000
    assert usd_to_micros("0.000001") == 1
    assert usd_to_micros(5) == 5_000_000


def test_sub_micro_and_float_amounts_are_refused() -> None:
    with pytest.raises(MoneyError, match="whole number of micros"):
        usd_to_micros("0.0000001")
    with pytest.raises(MoneyError, match="float"):
        usd_to_micros(0.1)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        usd_to_micros("ten")


def test_rounding_is_up_to_the_next_micro() -> None:
    assert ceil_micros(Fraction(1, 3)) == 1
    assert ceil_micros(Fraction(3, 1)) == 3
    assert ceil_micros(Fraction(-1, 2)) == 0


def test_micros_fields_refuse_floats() -> None:
    class Row(BaseModel):
        amount: Micros

    assert Row(amount=5).amount == 5
    with pytest.raises(ValidationError):
        Row(amount=5.0)  # type: ignore[arg-type]


def test_format_usd() -> None:
    assert format_usd(1_820_000) == "1.82"
    assert format_usd(10_000_000) == "10.00"
    assert format_usd(1) == "0.000001"
    assert format_usd(-2_500_000) == "-2.50"
