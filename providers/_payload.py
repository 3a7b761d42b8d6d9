"""Reading provider payloads: the JSON loading and field checks every adapter needs, written once.

Each helper turns a malformed value into `PayloadError` or `ValueError` (which adapters turn into
`PayloadError`), never into another exception, so a stored call that cannot be read is kept for replay.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn

from bridge.money import normalize_currency
from bridge.redact import describe
from providers.base import PayloadError


def _non_finite(name: str) -> NoReturn:
    raise ValueError(f"non-finite number {name} in JSON")


# made once: `json.loads` with these arguments builds a decoder (and its scanner) on every call, which
# showed in the ingest profile, where a delivery id is read from the body of every webhook
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_non_finite)


def load_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; floats as exact `Decimal`, NaN/Infinity and absurd nesting refused."""
    try:
        # what `json.loads` does with bytes: UTF-8, -16 or -32 by its first bytes
        payload = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, RecursionError):
        raise PayloadError("body is not JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError("body is not a JSON object")
    return payload


def currency_code(value: Any, field: str) -> str:
    """An ISO 4217 code, upper-cased (Polar and Gumroad send `usd`)."""
    if not isinstance(value, str):
        raise ValueError(f"{field} is not a currency code ({describe(value)})")
    return normalize_currency(value)


def non_negative_amount(value: Any, field: str) -> int | Decimal:
    """A JSON number for money: never a boolean, a string or a negative (refunds are their own events)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"{field} is not a number ({describe(value)})")
    if value < 0:
        raise ValueError(f"{field} is negative")
    return value


def flat_metadata(value: Any) -> dict[str, str]:
    """Checkout custom data as strings: scalars kept (booleans as true/false), nested values and null
    skipped; anything but an object (Razorpay's empty notes arrive as []) is no metadata."""
    if not isinstance(value, dict):
        return {}
    flat: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            flat[str(key)] = "true" if item else "false"
        elif isinstance(item, str | int | Decimal):
            flat[str(key)] = str(item)
    return flat


def scalar_text(value: Any) -> str | None:
    """An id or name as text: strings and integers (ids above 2**53 stay exact), never booleans."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        return str(value) or None
    return None


def discount_code(value: Any) -> str | None:
    """A redeemed discount code: a plain string, or the `code` of a discount object; None when absent."""
    if isinstance(value, dict):
        value = value.get("code")
    text = value.strip() if isinstance(value, str) else None
    return text or None
