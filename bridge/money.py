"""Money: minor-unit conversion with each currency's real ISO 4217 exponent, always `Decimal`."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from iso4217 import Currency

from bridge.redact import describe


class CurrencyError(ValueError):
    """A currency code that is not an ISO 4217 currency with a defined minor unit."""


def normalize_currency(code: str) -> str:
    """Upper-case ISO code (Polar and Gumroad send `usd`), checked against ISO 4217."""
    upper = code.strip().upper()
    currency_exponent(upper)
    return upper


def currency_exponent(code: str) -> int:
    """Digits after the decimal point for `code` (JPY 0, USD 2, KWD 3), from the ISO 4217 table."""
    try:
        exponent = Currency(code.strip().upper()).exponent
    except ValueError:
        raise CurrencyError(f"unknown currency ({describe(code)})") from None
    if exponent is None:
        raise CurrencyError(f"currency {code} has no minor unit (ISO 4217 N.A.)")
    return int(exponent)


def from_minor_units(amount: int | str | Decimal, currency: str) -> Decimal:
    """Minor units (cents, paise, fils) to a major-unit `Decimal` with the currency's exponent."""
    value = to_decimal(amount)
    if _too_large(value):
        raise ValueError("amount out of range")
    if value != value.to_integral_value():
        raise ValueError("minor-unit amount is not a whole number")
    exponent = currency_exponent(currency)
    return _quantized(value.scaleb(-exponent), exponent, amount)


def from_major_units(amount: int | str | Decimal, currency: str) -> Decimal:
    """A major-unit amount (`"12.5"`) as a `Decimal` at the currency's exponent (`12.50`)."""
    exponent = currency_exponent(currency)
    return _quantized(to_decimal(amount), exponent, amount)


# no real payment has more digits; anything beyond is junk that must not reach arithmetic or Partnero
MAX_DIGITS_BEFORE_POINT = 15


def _too_large(value: Decimal) -> bool:
    # adjusted() reads the exponent without arithmetic, which would overflow on 1e999999999
    return value != 0 and value.adjusted() >= MAX_DIGITS_BEFORE_POINT


def _quantized(value: Decimal, exponent: int, original: object) -> Decimal:
    if _too_large(value):
        raise ValueError("amount out of range")
    try:
        return value.quantize(Decimal(1).scaleb(-exponent))
    except ArithmeticError:
        raise ValueError("amount out of range") from None


def to_decimal(amount: int | str | Decimal) -> Decimal:
    """Exact `Decimal` from an int, a numeric string or a Decimal; floats are refused on purpose."""
    if isinstance(amount, (bool, float)):
        raise TypeError("money must not pass through float; parse JSON with parse_float=Decimal")
    try:
        value = Decimal(amount) if not isinstance(amount, Decimal) else amount
    except InvalidOperation:
        raise ValueError(f"not a number ({describe(amount)})") from None
    if not value.is_finite():
        raise ValueError("not a finite amount")
    return value
