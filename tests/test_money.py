from decimal import Decimal

import pytest

from bridge.money import CurrencyError, currency_exponent, from_major_units, from_minor_units, normalize_currency


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [
        (999, "USD", Decimal("9.99")),
        (1000, "JPY", Decimal("1000")),
        (1234, "KWD", Decimal("1.234")),
        (5, "BHD", Decimal("0.005")),
        ("250000", "INR", Decimal("2500.00")),
        (0, "EUR", Decimal("0.00")),
        (99, "usd", Decimal("0.99")),
    ],
)
def test_minor_units_use_the_currency_exponent(minor: int | str, currency: str, major: Decimal) -> None:
    value = from_minor_units(minor, currency)
    assert value == major
    assert str(value) == str(major)


def test_exponents_come_from_iso_4217() -> None:
    assert (currency_exponent("JPY"), currency_exponent("USD"), currency_exponent("KWD")) == (0, 2, 3)
    assert currency_exponent("CLF") == 4


def test_float_never_accepted_for_money() -> None:
    with pytest.raises(TypeError):
        from_minor_units(9.99, "USD")  # type: ignore[arg-type]


def test_fractional_minor_units_refused() -> None:
    with pytest.raises(ValueError):
        from_minor_units("10.5", "USD")


def test_major_units_quantized_to_the_exponent() -> None:
    assert str(from_major_units("12.5", "EUR")) == "12.50"
    assert str(from_major_units(Decimal("1500"), "JPY")) == "1500"


def test_unknown_and_unitless_currencies_refused() -> None:
    with pytest.raises(CurrencyError):
        normalize_currency("ZZZ")
    with pytest.raises(CurrencyError):
        currency_exponent("XXX")
    assert normalize_currency(" usd ") == "USD"


@pytest.mark.parametrize("junk", ["1e999999999", "-1e400", 10**20])
def test_absurd_amounts_are_value_errors_not_arithmetic_crashes(junk: object) -> None:
    with pytest.raises(ValueError, match="out of range"):
        from_minor_units(junk, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        from_major_units(junk, "USD")  # type: ignore[arg-type]
