from decimal import Decimal

import pytest

from providers._payload import currency_code, load_json_object, non_negative_amount
from providers.base import PayloadError


def test_json_objects_keep_exact_decimals() -> None:
    assert load_json_object(b'{"amount": 19.99, "id": 123}') == {"amount": Decimal("19.99"), "id": 123}


@pytest.mark.parametrize("body", [b"[]", b"not json", b'{"a": NaN}', b'{"a": Infinity}', b"[" * 100_000, b"\xff"])
def test_anything_else_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        load_json_object(body)


def test_field_checks() -> None:
    assert currency_code("usd", "currency") == "USD"
    assert non_negative_amount(Decimal("0"), "total") == 0
    for bad in (True, "10", -1, Decimal("-0.01"), None):
        with pytest.raises(ValueError):
            non_negative_amount(bad, "total")
    with pytest.raises(ValueError, match="currency is not a currency code"):
        currency_code(840, "currency")


def test_flat_metadata_and_scalar_text() -> None:
    from providers._payload import flat_metadata, scalar_text

    raw = {"user_id": "u1", "n": 7, "vip": True, "price": Decimal("9.50"), "nested": {"a": 1}, "none": None}
    assert flat_metadata(raw) == {"user_id": "u1", "n": "7", "vip": "true", "price": "9.50"}
    assert flat_metadata([]) == {}
    assert (scalar_text(820982911946154508), scalar_text(""), scalar_text(True)) == ("820982911946154508", None, None)
