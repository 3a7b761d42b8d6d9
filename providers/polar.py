"""Polar (polar.sh): Standard Webhooks with two key derivations; `order.paid` sales, refunds, disputes.

Polar signs every delivery the Standard Webhooks way, but which HMAC key it uses depends on when the
endpoint's `whsec_` secret was generated: older secrets are used as the UTF-8 bytes of the whole
string ("legacy"), newer ones are base64-decoded after the prefix as the spec says ("standard").
The secret does not tell which one it is, so `key_scheme: auto` tries both keys.

One Polar order is one payment: a purchase, a subscription's first charge and every renewal each get
their own order and their own `order.paid`, so the transaction key is `polar:order:<order id>`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

from pydantic import Field

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_minor_units, normalize_currency
from bridge.redact import describe
from providers._api import ApiOptions
from providers._payload import discount_code
from providers.base import (
    AdapterOptions,
    CheckoutLink,
    PayloadError,
    ProviderAdapter,
    SignedRequest,
    WebhookRequest,
    body_hash,
)
from providers.signatures import (
    STANDARD_TOLERANCE_SECONDS,
    standard_webhook_headers,
    standard_webhook_key,
    verify_standard_webhook,
)

KEY_PREFIX = "polar:order:"
_ACTED_ON = frozenset({"order.paid", "order.refunded", "refund.created", "refund.updated"})
SECRET_PREFIX = "whsec_"

# Why each event we do not act on is skipped; the operator sees these reasons.
_IGNORED_REASONS = {
    "order.created": "order may still be pending; the sale is taken from order.paid",
    "order.updated": "repeats order.paid or order.refunded; the sale is taken from order.paid",
    "subscription.cycled": "fires before the renewal order exists; the renewal is taken from its order.paid",
}
_IGNORED_PREFIXES = {
    "subscription.": "subscription lifecycle; payments arrive as order.paid",
    "checkout.": "checkout lifecycle; the payment arrives as order.paid",
    "customer.": "customer record change, not a payment",
    "benefit_grant.": "benefit grant, not a payment",
    "benefit.": "store setup, not a payment",
    "product.": "store setup, not a payment",
    "discount.": "store setup, not a payment",
    "organization.": "store setup, not a payment",
}


class PolarOptions(ApiOptions):
    """Endpoint settings for Polar; `api_key` (an access token with orders:read) enables backfill."""

    # legacy: key = UTF-8 bytes of the whole secret; standard: base64-decoded part after `whsec_`
    key_scheme: Literal["standard", "legacy", "auto"] = "auto"
    tolerance_seconds: int = Field(default=STANDARD_TOLERANCE_SECONDS, gt=0)
    # Polar's payloads carry no test flag; a sandbox endpoint says so here
    sandbox: bool = False
    # needed by backfill only with a personal access token (an organization token names its organization)
    organization_id: str | None = None


class PolarAdapter(ProviderAdapter):
    name = "polar"
    Options = PolarOptions
    # Checkout Links take no free-form metadata from the URL: only `reference_id` and `utm_*`, stored in
    # the checkout's (then the order's) metadata (https://docs.polar.sh/changelog/recent; polarsource/polar
    # server/polar/checkout_link/endpoints.py `redirect`), so the key arrives as `metadata.reference_id`
    checkout_links: ClassVar[tuple[CheckoutLink, ...]] = (
        CheckoutLink(hosts=("buy.polar.sh",), param="reference_id", path_prefixes=("/polar_cl_",)),
        CheckoutLink(
            hosts=("api.polar.sh", "sandbox-api.polar.sh"), param="reference_id", path_prefixes=("/v1/checkout-links/",)
        ),
    )

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        self.settings = options if isinstance(options, PolarOptions) else PolarOptions()
        self._keys = tuple(key for secret in self.secrets for key in self._derive_keys(secret))

    def _derive_keys(self, secret: str) -> list[bytes]:
        scheme = self.settings.key_scheme
        keys = []
        if scheme in ("legacy", "auto"):
            keys.append(standard_webhook_key(secret, "raw"))
        if scheme in ("standard", "auto"):
            try:
                keys.append(standard_webhook_key(secret, "standard"))
            except ValueError:
                # a legacy secret need not be base64; under auto it simply has no standard key
                if scheme == "standard":
                    raise ValueError(
                        "a Polar secret is not base64 after whsec_; use key_scheme: legacy or auto"
                    ) from None
        return keys

    # --- authenticity --------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float) -> None:
        verify_standard_webhook(self._keys, request.headers, request.body, now, self.settings.tolerance_seconds)

    def delivery_id(self, request: WebhookRequest) -> str:
        # the event id, stable across Polar's retries
        return request.header("webhook-id") or body_hash(request.body)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        # one body is one Polar event, so its id stays the same however often it is re-sent
        msg_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "polar-event:" + hashlib.sha256(body).hexdigest()))
        headers = standard_webhook_headers(self._signing_key(secret), msg_id, int(now), body)
        headers["user-agent"] = "polar.sh webhooks"
        return SignedRequest(headers=headers)

    def _signing_key(self, secret: str) -> bytes:
        scheme = self.settings.key_scheme
        if scheme == "legacy":
            return standard_webhook_key(secret, "raw")
        if scheme == "standard":
            return standard_webhook_key(secret, "standard")
        try:
            if secret.startswith(SECRET_PREFIX):
                return standard_webhook_key(secret, "standard")
        except ValueError:
            pass
        return standard_webhook_key(secret, "raw")

    # --- parsing -------------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        event_type, data, occurred_at = _envelope(request.body)
        if event_type not in _ACTED_ON:
            return [ignored(event_type, _ignored_reason(event_type))]
        if not isinstance(data, dict):
            raise PayloadError(f"{event_type}: missing data object")
        try:
            if event_type == "order.paid":
                return [self._sale(event_type, data, occurred_at)]
            if event_type == "order.refunded":
                return [self._order_refund(event_type, data, occurred_at)]
            return [self._refund(event_type, data, occurred_at)]
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise PayloadError(f"{event_type}: unreadable field ({exc})") from None

    def _sale(self, event_type: str, data: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
        currency = normalize_currency(_text(data, "currency"))
        total = data["total_amount"]
        if _minor(total) == 0:
            # free products and trial starts produce $0 orders; a sale of nothing earns nothing
            return ignored(event_type, "order total is 0 (free product, full discount or trial start)")
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event_type,
            transaction_key=KEY_PREFIX + _text(data, "id"),
            amount=from_minor_units(_minor(total), currency),
            # total_amount = net_amount (after discounts) + tax_amount
            tax=_optional_minor(data.get("tax_amount"), currency),
            currency=currency,
            customer=_order_customer(data),
            product_id=_optional_text(data.get("product_id")),
            test_mode=self.settings.sandbox,
            occurred_at=occurred_at,
            coupon_code=discount_code(data.get("discount")),
        )

    def _order_refund(self, event_type: str, data: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
        status = data.get("status")
        if status not in ("refunded", "partially_refunded"):
            return ignored(event_type, f"order status is {status!r}, not refunded")
        currency = normalize_currency(_text(data, "currency"))
        # refunded_amount excludes tax; with the refunded tax it compares like with total_amount
        refunded_tax = _minor(data.get("refunded_tax_amount") or 0)
        refunded = _minor(data["refunded_amount"]) + refunded_tax
        return NormalizedEvent(
            kind=EventKind.REFUND,
            event_type=event_type,
            transaction_key=KEY_PREFIX + _text(data, "id"),
            currency=currency,
            customer=_order_customer(data),
            product_id=_optional_text(data.get("product_id")),
            test_mode=self.settings.sandbox,
            occurred_at=occurred_at,
            full_refund=status == "refunded",
            refunded_total=from_minor_units(refunded, currency),
            refunded_total_tax=from_minor_units(refunded_tax, currency),
            sale_amount=from_minor_units(_minor(data["total_amount"]), currency),
            sale_tax=_optional_minor(data.get("tax_amount"), currency),
        )

    def _refund(self, event_type: str, data: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
        status = data.get("status")
        if status != "succeeded":
            return ignored(event_type, f"refund status is {status!r}; only a succeeded refund moves money")
        currency = normalize_currency(_text(data, "currency"))
        # Polar splits a refund into amount (net) and tax_amount
        tax = _minor(data.get("tax_amount") or 0)
        amount = _minor(data["amount"]) + tax
        disputed = data.get("dispute") is not None
        return NormalizedEvent(
            kind=EventKind.DISPUTE if disputed else EventKind.REFUND,
            event_type=event_type,
            transaction_key=KEY_PREFIX + _text(data, "order_id"),
            amount=from_minor_units(amount, currency),
            tax=from_minor_units(tax, currency),
            currency=currency,
            customer=CustomerFacts(customer_id=_optional_text(data.get("customer_id"))),
            test_mode=self.settings.sandbox,
            occurred_at=occurred_at,
            # Polar refunds to head off a chargeback: the money is back with the buyer either way
            dispute_state=DisputeState.LOST if disputed else None,
            # refund.created and refund.updated can both report one succeeded refund
            refund_id=_optional_text(data.get("id")),
        )


def _envelope(body: bytes) -> tuple[str, object, datetime | None]:
    try:
        payload = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise PayloadError("body is not JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError("body is not a JSON object")
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError("missing event type")
    return event_type, payload.get("data"), _timestamp(payload.get("timestamp"))


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _ignored_reason(event_type: str) -> str:
    if event_type in _IGNORED_REASONS:
        return _IGNORED_REASONS[event_type]
    for prefix, reason in _IGNORED_PREFIXES.items():
        if event_type.startswith(prefix):
            return reason
    return "event type not used by the bridge"


def _order_customer(data: Mapping[str, Any]) -> CustomerFacts:
    customer = data.get("customer")
    if not isinstance(customer, dict):
        customer = {}
    return CustomerFacts(
        email=_optional_text(customer.get("email")),
        customer_id=_optional_text(data.get("customer_id") or customer.get("id")),
        external_id=_optional_text(customer.get("external_id")),
        name=_optional_text(customer.get("name")),
        metadata=_metadata(data.get("metadata")),
    )


def _metadata(value: object) -> dict[str, str]:
    """Polar metadata values are strings, integers, floats or booleans; nested values are skipped."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[str(key)] = "true" if item else "false"
        elif isinstance(item, str | int | Decimal):
            out[str(key)] = str(item)
    return out


def _minor(value: object) -> int:
    """An integer cent amount; JSON floats, booleans and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"amount is not an integer number of cents ({describe(value)})")
    if value < 0:
        raise ValueError("amount is negative")
    return value


def _optional_minor(value: object, currency: str) -> Decimal | None:
    return None if value is None else from_minor_units(_minor(value), currency)


def _text(data: Mapping[str, Any], field: str) -> str:
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ValueError(f"{field} is missing or empty")
    return str(value)


def _optional_text(value: object) -> str | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value)
    return None
