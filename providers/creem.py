"""Creem: hex HMAC-SHA256 of the raw body in `creem-signature`; sales keyed on the transaction id.

Creem announces the first payment of a subscription twice, as `checkout.completed` (the order and
its `transaction`) and as `subscription.paid` (`last_transaction_id`). Both resolve to
`creem:tran:<transaction id>`, so the payment is one Partnero sale; renewals are new transactions,
hence new sales. Refunds and disputes name the transaction, so they share the sale's key.

Creem's documented `subscription.paid` names its transaction but not what was paid. With an `api_key`
the adapter reads that transaction from Creem's API and books its `amount_paid`; without one (or when
Creem does not report it paid) the renewal is skipped with the reason, never booked at list price.

The order of `checkout.completed` names a redeemed discount by its id (`order.discount`). With the
endpoint's `api_key` the code (the `coupon` partner source) is read from Creem's API while the webhook is
recorded; without it the sale says that a discount was used and that its code is unknown. An order whose
`discount` is expanded to an object with its `code` needs no API call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_minor_units
from bridge.redact import describe
from providers import _creem_api
from providers._api import ApiOptions, WebhookLookup, configured_key, read_code
from providers._payload import currency_code, load_json_object
from providers.base import (
    AdapterOptions,
    CheckoutLink,
    PayloadError,
    ProviderAdapter,
    SignedRequest,
    WebhookRequest,
    body_hash,
)
from providers.signatures import sign_hmac, verify_hmac

SIGNATURE_HEADER = "creem-signature"

# `prod` is live money; the docs' samples show `local` and `sandbox`, the SDK also names `test`
_TEST_MODES = frozenset({"test", "sandbox", "local"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

CODE_UNKNOWN = (
    "a discount was used; its code was not read (the order names only the discount's id; webhooks read the code"
    " when the endpoint has an api_key)"
)
CODE_GONE = "a discount was used; Creem no longer has it (deleted), so its code is unknown"

_IGNORED = {
    "subscription.active": "sync only; the payment is booked from checkout.completed / subscription.paid",
    "subscription.trialing": "trial started; nothing paid yet",
    "subscription.update": "subscription changed; no payment",
    "subscription.canceled": "subscription ended; no payment",
    "subscription.scheduled_cancel": "cancellation scheduled; no payment",
    "subscription.expired": "period ended without payment; a later subscription.paid books a retry",
    "subscription.paused": "subscription paused; no payment",
    "subscription.past_due": "payment failed; a later subscription.paid books a retry",
    "subscription.unpaid": "payment failed; no money collected",
}


class CreemOptions(ApiOptions):
    """`api_key` (and `api_base_url: https://test-api.creem.io/v1` for test mode) enables backfill, and
    lets a renewal's `subscription.paid` without `last_transaction` be booked at its paid amount."""


class CreemAdapter(ProviderAdapter):
    name: ClassVar[str] = "creem"
    Options: ClassVar[type[AdapterOptions]] = CreemOptions
    # Creem only sends dispute.created: waiting for a won/lost outcome would wait forever
    reports_dispute_outcome: ClassVar[bool] = False
    # payment links take `metadata[<key>]=<value>` query parameters, stored as the payment's metadata
    # (https://docs.creem.io/learn/customization/payment-links)
    checkout_links: ClassVar[tuple[CheckoutLink, ...]] = (
        CheckoutLink(hosts=("creem.io",), param="metadata[{name}]", path_prefixes=("/payment/", "/test/payment/")),
    )

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        # The secret looks like a Standard Webhooks `whsec_…` but Creem uses the whole string,
        # prefix included, as the HMAC key: decoding it would reject every genuine delivery.
        self._keys = tuple(secret.encode("utf-8") for secret in self.secrets)
        key = configured_key(options)
        self._lookup: WebhookLookup | None = _creem_api.webhook_lookup(options, key) if key else None

    def verify(self, request: WebhookRequest, now: float) -> None:
        verify_hmac(self._keys, request.body, request.header(SIGNATURE_HEADER), header=SIGNATURE_HEADER)

    def delivery_id(self, request: WebhookRequest) -> str:
        # the envelope `id` (evt_…) stays the same across Creem's retries and manual resends
        try:
            envelope = json.loads(request.body, parse_float=Decimal)
        except (ValueError, RecursionError):
            return body_hash(request.body)
        event_id = envelope.get("id") if isinstance(envelope, dict) else None
        if isinstance(event_id, str) and event_id.strip():
            return event_id.strip()
        return body_hash(request.body)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        return SignedRequest(headers={SIGNATURE_HEADER: sign_hmac(secret.encode("utf-8"), body)})

    async def read(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """`parse`, with what the payload leaves out read from Creem's API (the endpoint's `api_key`): the
        paid amount of a `subscription.paid` that lacks it, and the code of a redeemed discount."""
        events = await self._with_paid_amount(request, self.parse(request))
        discount_id = _order_discount(request.body)
        return await read_code(events, self._lookup, discount_id, _creem_api.discount_code, CODE_GONE)

    async def _with_paid_amount(self, request: WebhookRequest, events: list[NormalizedEvent]) -> list[NormalizedEvent]:
        if self._lookup is None or not any(_awaits_paid_amount(event) for event in events):
            return events
        envelope = load_json_object(request.body)
        obj = envelope["object"]
        transaction = await _creem_api.paid_transaction(self._lookup, obj["last_transaction_id"])
        if transaction is None:
            return events
        event_type = envelope["eventType"]
        try:
            # the transaction is what the payload's `last_transaction` would have been
            return [
                _subscription_paid(
                    event_type, {**obj, "last_transaction": transaction}, _timestamp(envelope.get("created_at"))
                )
            ]
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{event_type}: Creem API transaction: {exc}") from None

    async def aclose(self) -> None:
        if self._lookup is not None:
            await self._lookup.aclose()

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        envelope = load_json_object(request.body)
        event_type = envelope.get("eventType")
        if not isinstance(event_type, str) or not event_type:
            raise PayloadError("missing eventType")
        handler = _HANDLERS.get(event_type)
        if handler is None:
            return [ignored(event_type, _IGNORED.get(event_type, "event not used by the bridge"))]
        obj = envelope.get("object")
        if not isinstance(obj, dict):
            raise PayloadError(f"{event_type}: missing object")
        try:
            return [handler(event_type, obj, _timestamp(envelope.get("created_at")))]
        # ArithmeticError: decimal.Overflow from an absurd exponent is not an InvalidOperation
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{event_type}: {exc}") from None


def _order_discount(body: bytes) -> str | None:
    """The id of the discount a `checkout.completed` order redeemed, when the payload does not give its code."""
    envelope = load_json_object(body)
    obj = _mapping(envelope.get("object"))
    if envelope.get("eventType") != "checkout.completed":
        return None
    discount = _mapping(obj.get("order")).get("discount")
    return None if _code_of(discount) else _id_of(discount)


def _code_of(discount: Any) -> str | None:
    return _text(discount.get("code")) if isinstance(discount, dict) else None


def _checkout_completed(event_type: str, obj: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
    order = _object(obj, "order")
    transaction_id = _text(order.get("transaction"))
    if transaction_id:
        key = f"creem:tran:{transaction_id}"
    elif _id_of(obj.get("subscription")) or order.get("type") in ("recurring", "subscription"):
        # Older payloads lack order.transaction. An order key here would not match the
        # subscription.paid twin (keyed on the transaction): two sales for one payment.
        return ignored(event_type, "no order.transaction; the payment is booked from its subscription.paid")
    else:
        # a one-time order of an older payload: its refund will name the transaction, not the order
        key = f"creem:order:{_required(order, 'order', 'id')}"
    currency = currency_code(order.get("currency"), "order.currency")
    # amount_paid is what was charged (after discount, tax included, the scale refunds use), of which
    # tax_amount is tax; older payloads only have amount
    paid_field = "amount_paid" if order.get("amount_paid") is not None else "amount"
    amount = from_minor_units(_cents(order.get(paid_field), f"order.{paid_field}"), currency)
    if amount == 0:
        return ignored(event_type, "nothing was paid (free trial or full discount)")
    order_type = _text(order.get("type"))
    return NormalizedEvent(
        kind=EventKind.SALE,
        event_type=event_type,
        transaction_key=key,
        amount=amount,
        tax=_optional_amount(order, "tax_amount", currency) if paid_field == "amount_paid" else None,
        currency=currency,
        customer=_customer(obj),
        product_id=_id_of(obj.get("product")) or _id_of(order.get("product")),
        product_type=_product_type(order_type),
        test_mode=_test_mode(obj, order),
        occurred_at=occurred_at,
        coupon_code=_code_of(order.get("discount")),
        # `read` puts the code here when it can ask Creem for it
        reason=CODE_UNKNOWN if _id_of(order.get("discount")) and not _code_of(order.get("discount")) else None,
    )


def _subscription_paid(event_type: str, obj: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
    transaction_id = _required(obj, "object", "last_transaction_id")
    key = f"creem:tran:{transaction_id}"
    last = _mapping(obj.get("last_transaction"))
    if last.get("amount_paid") is None or _text(last.get("id")) not in (None, transaction_id):
        # The documented payload names the transaction but not what was paid; the product's list price
        # (before tax and discounts, one unit) is not money paid. A first payment is booked from its
        # checkout.completed under this same key; a renewal needs the operator.
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event_type,
            transaction_key=key,
            customer=_customer(obj),
            test_mode=_test_mode(obj),
            reason=f"no paid amount in the payload (no last_transaction): book transaction {transaction_id} by hand"
            " if no checkout.completed books it (an api_key on the endpoint reads it from Creem)",
        )
    currency = currency_code(last.get("currency"), "last_transaction.currency")
    amount = from_minor_units(_cents(last["amount_paid"], "last_transaction.amount_paid"), currency)
    if amount == 0:
        return ignored(event_type, "nothing was paid (free trial or full discount)")
    return NormalizedEvent(
        kind=EventKind.SALE,
        event_type=event_type,
        transaction_key=key,
        amount=amount,
        tax=_optional_amount(last, "tax_amount", currency),
        currency=currency,
        customer=_customer(obj),
        product_id=_id_of(obj.get("product")),
        product_type="subscription",
        test_mode=_test_mode(obj),
        occurred_at=occurred_at,
    )


def _awaits_paid_amount(event: NormalizedEvent) -> bool:
    # `_subscription_paid` without a paid amount: a sale with its key and a reason, but no amount
    return event.event_type == "subscription.paid" and event.kind is EventKind.SALE and event.amount is None


def _refund_created(event_type: str, obj: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
    status = _text(obj.get("status"))
    if status is not None and status != "succeeded":
        return ignored(event_type, f"refund status is {status!r}; only a succeeded refund moves money")
    transaction = _object(obj, "transaction")
    transaction_id = _required(transaction, "transaction", "id")
    currency = currency_code(obj.get("refund_currency") or transaction.get("currency"), "refund_currency")
    amount = from_minor_units(_cents(obj.get("refund_amount"), "refund_amount"), currency)
    sale_amount: Decimal | None = None
    sale_tax: Decimal | None = None
    refunded_total: Decimal | None = None
    full_refund: bool | None = None
    if (
        transaction.get("currency") is None
        or currency_code(transaction["currency"], "transaction.currency") == currency
    ):
        # the refund is gross only: the ledger takes off the transaction's own tax share
        sale_amount = _optional_amount(transaction, "amount_paid", currency)
        if sale_amount is not None:
            sale_tax = _optional_amount(transaction, "tax_amount", currency)
        # refunded_amount is the transaction's running total, this refund included
        refunded_total = _optional_amount(transaction, "refunded_amount", currency)
        if sale_amount is not None:
            full_refund = max(amount, refunded_total or amount) >= sale_amount
    return NormalizedEvent(
        kind=EventKind.REFUND,
        event_type=event_type,
        transaction_key=f"creem:tran:{transaction_id}",
        amount=amount,
        currency=currency,
        customer=_customer(obj),
        product_id=_id_of(_mapping(obj.get("order")).get("product")),
        test_mode=_test_mode(obj, transaction),
        occurred_at=occurred_at,
        full_refund=full_refund,
        refunded_total=refunded_total,
        sale_amount=sale_amount,
        sale_tax=sale_tax,
        refund_id=_text(obj.get("id")),
        reason=_text(obj.get("reason")),
    )


def _dispute_created(event_type: str, obj: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
    transaction = _object(obj, "transaction")
    transaction_id = _required(transaction, "transaction", "id")
    currency = currency_code(obj.get("currency") or transaction.get("currency"), "currency")
    return NormalizedEvent(
        kind=EventKind.DISPUTE,
        event_type=event_type,
        transaction_key=f"creem:tran:{transaction_id}",
        amount=_optional_amount(obj, "amount", currency),
        currency=currency,
        customer=_customer(obj),
        product_id=_id_of(_mapping(obj.get("order")).get("product")),
        test_mode=_test_mode(obj, transaction),
        occurred_at=occurred_at,
        sale_amount=_optional_amount(transaction, "amount_paid", currency),
        dispute_state=DisputeState.OPENED,
    )


_HANDLERS = {
    "checkout.completed": _checkout_completed,
    "subscription.paid": _subscription_paid,
    "refund.created": _refund_created,
    "dispute.created": _dispute_created,
}


def _customer(obj: Mapping[str, Any]) -> CustomerFacts:
    customer = obj.get("customer")
    details = customer if isinstance(customer, dict) else {}
    return CustomerFacts(
        email=_text(details.get("email")),
        customer_id=_id_of(customer),
        name=_text(details.get("name")),
        metadata=_metadata(obj),
    )


def _metadata(obj: Mapping[str, Any]) -> dict[str, str]:
    checkout = _mapping(obj.get("checkout"))
    # Checkout and subscription events carry `metadata` at the top; refunds and disputes only
    # inside their checkout / subscription copies.
    candidates = (
        obj.get("metadata"),
        checkout.get("metadata"),
        _mapping(obj.get("subscription")).get("metadata"),
    )
    source = next((c for c in candidates if isinstance(c, dict) and c), {})
    flat: dict[str, str] = {}
    for key, value in source.items():
        if isinstance(value, bool):
            flat[str(key)] = "true" if value else "false"
        elif isinstance(value, str | int | Decimal):
            flat[str(key)] = str(value)
    request_id = _text(obj.get("request_id")) or _text(checkout.get("request_id"))
    if request_id is not None:
        # the checkout's request_id is the other place a merchant can put its own key
        flat.setdefault("request_id", request_id)
    return flat


def _test_mode(obj: Mapping[str, Any], *nested: Mapping[str, Any]) -> bool:
    for source in (obj, *nested):
        mode = source.get("mode")
        if isinstance(mode, str):
            return mode.strip().lower() in _TEST_MODES
    return False


def _product_type(order_type: str | None) -> str | None:
    if order_type in ("recurring", "subscription"):
        return "subscription"
    if order_type == "onetime":
        return "one_time"
    return order_type


def _object(obj: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = obj.get(field)
    if not isinstance(value, dict):
        raise PayloadError(f"missing object.{field}")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _required(obj: Mapping[str, Any], where: str, field: str) -> str:
    value = _text(obj.get(field))
    if value is None:
        raise PayloadError(f"missing {where}.{field}")
    return value


def _id_of(value: Any) -> str | None:
    # Creem expands related objects in some places and leaves a bare id in others
    if isinstance(value, dict):
        return _text(value.get("id"))
    return _text(value)


def _cents(value: Any, field: str) -> int | Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"{field} is not an amount in cents ({describe(value)})")
    if value < 0 or (isinstance(value, Decimal) and value != value.to_integral_value()):
        raise ValueError(f"{field} is not a whole, non-negative number of cents")
    return value


def _optional_amount(obj: Mapping[str, Any], field: str, currency: str) -> Decimal | None:
    value = obj.get(field)
    return None if value is None else from_minor_units(_cents(value, field), currency)


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


def _timestamp(value: Any) -> datetime | None:
    # `created_at` is epoch milliseconds; the oldest samples used an ISO string
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return _EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
