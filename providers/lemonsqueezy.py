"""Lemon Squeezy: `X-Signature` hex HMAC-SHA256 of the raw body; JSON:API orders and subscription invoices.

Keys: `lemonsqueezy:order:<order id>` for an order (one-off purchase or the first subscription payment)
and `lemonsqueezy:invoice:<invoice id>` for a renewal or a plan-change charge, so the first subscription
payment, announced by both `order_created` and `subscription_payment_success` (billing_reason
`initial`), is counted once.

Amounts: `total` is what the buyer paid and `tax` the part of it that is tax (whether the price was
set tax-inclusive or not); refunds report only the cumulative gross `refunded_amount`, so each refund
event also names its order's `total` and `tax` for the ledger to take off the right tax share.

An order names no discount code, only its `discount_total`. With the endpoint's `api_key`, an order that
was discounted has its code (the `coupon` partner source) read from its discount redemption while the
webhook is recorded; without the key the sale says a discount was used and that its code is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from bridge.events import CustomerFacts, EventKind, NormalizedEvent, ignored
from bridge.money import from_minor_units, normalize_currency
from bridge.redact import describe
from providers import _lemonsqueezy_api
from providers._api import ApiOptions, WebhookLookup, configured_key, read_code
from providers._payload import load_json_object
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

SIGNATURE_HEADER = "x-signature"
EVENT_HEADER = "x-event-name"

# cumulative `refunded_amount` rises with each partial refund of the same object, so it belongs in
# the delivery id: otherwise the second partial refund would be dropped as a duplicate delivery
_REFUND_EVENTS = frozenset({"order_refunded", "subscription_payment_refunded"})

_IGNORED_REASONS = {
    "subscription_created": "subscription start; its first payment is counted by order_created",
    "subscription_payment_recovered": (
        "always sent together with subscription_payment_success for the same invoice, which counts it"
    ),
    "subscription_payment_failed": "no money moved",
    "subscription_updated": "subscription change; charges arrive as subscription_payment_success",
    "subscription_cancelled": "no money moved",
    "subscription_expired": "no money moved",
    "subscription_resumed": "no money moved",
    "subscription_paused": "no money moved",
    "subscription_unpaused": "no money moved",
    "license_key_created": "license keys carry no payment",
    "license_key_updated": "license keys carry no payment",
}

CODE_UNKNOWN = (
    "a discount was used; its code was not read (the order names only discount_total; webhooks read the code"
    " when the endpoint has an api_key)"
)
CODE_NOT_REDEEMED = "a discount was used; Lemon Squeezy lists no discount redemption for the order"

# a JSON object as parsed from the body
Json = Mapping[str, Any]
Handler = Callable[[str, Json, Json], NormalizedEvent]


class LemonSqueezyOptions(ApiOptions):
    """`api_key` (and `store_id` when the key sees several stores) lets backfill and reconcile read the API,
    and finds the order of a first payment refunded as a subscription invoice."""

    store_id: int | None = None


class LemonSqueezyAdapter(ProviderAdapter):
    name = "lemonsqueezy"
    Options = LemonSqueezyOptions
    # the dashboard takes a signing secret of 6 to 40 characters
    min_secret_length: ClassVar[int] = 6
    # https://docs.lemonsqueezy.com/help/checkout/passing-custom-data: `checkout[custom][<name>]` on
    # `https://<store>.lemonsqueezy.com/checkout/buy/<variant>` arrives as `meta.custom_data.<name>`
    checkout_links: ClassVar[tuple[CheckoutLink, ...]] = (
        CheckoutLink(
            hosts=("lemonsqueezy.com",), param="checkout[custom][{name}]", path_prefixes=("/checkout/buy/", "/buy/")
        ),
    )

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        if any(not secret for secret in self.secrets):
            raise ValueError("lemonsqueezy: empty webhook signing secret")
        # the merchant types the secret into the dashboard; Lemon Squeezy uses it as UTF-8 bytes
        self._keys = tuple(secret.encode("utf-8") for secret in self.secrets)
        self._handlers: dict[str, Handler] = {
            "order_created": self._order_created,
            "order_refunded": self._order_refunded,
            "subscription_payment_success": self._invoice_paid,
            "subscription_payment_refunded": self._invoice_refunded,
        }
        key = configured_key(options)
        self._lookup: WebhookLookup | None = _lemonsqueezy_api.webhook_lookup(options, key) if key else None

    # --- signature ---------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float) -> None:
        # no timestamp in the scheme, so there is no replay window to check
        verify_hmac(self._keys, request.body, request.header(SIGNATURE_HEADER), header="X-Signature")

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        headers = {SIGNATURE_HEADER: sign_hmac(secret.encode("utf-8"), body)}
        event = _peek_event_name(body)
        if event:
            headers[EVENT_HEADER] = event
        return SignedRequest(headers=headers)

    # --- delivery id -------------------------------------------------------------------------------

    def delivery_id(self, request: WebhookRequest) -> str:
        """`event:type:id` (plus the cumulative refunded amount for refunds), else a body hash.

        Lemon Squeezy documents no delivery id; a manual resend repeats the body, so it dedups too.
        """
        try:
            payload = load_json_object(request.body)
            meta, data = payload.get("meta"), payload.get("data")
            if not isinstance(meta, Mapping) or not isinstance(data, Mapping):
                return body_hash(request.body)
            event, kind, object_id = meta.get("event_name"), data.get("type"), data.get("id")
            if not (isinstance(event, str) and event and isinstance(kind, str) and kind):
                return body_hash(request.body)
            parts = [event, kind, _object_id(object_id)]
            attributes = data.get("attributes")
            if event in _REFUND_EVENTS and isinstance(attributes, Mapping):
                parts.append(str(attributes.get("refunded_amount")))
            if meta.get("test_mode") is True:
                parts.append("test")
            return ":".join(parts)
        except (PayloadError, ValueError, TypeError, RecursionError):
            return body_hash(request.body)

    # --- parse -------------------------------------------------------------------------------------

    async def read(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """`parse`, with what the webhook leaves out read through the endpoint's `api_key`: the code of a
        discounted order, and the order a refund of a subscription's first payment belongs to."""
        events = await self._on_its_order(request, self.parse(request))
        if self._lookup is None:
            return events  # no API to ask: spare reading the body a second time
        order_id = _discounted_order(request.body)
        return await read_code(events, self._lookup, order_id, _lemonsqueezy_api.redeemed_code, CODE_NOT_REDEEMED)

    async def _on_its_order(self, request: WebhookRequest, events: list[NormalizedEvent]) -> list[NormalizedEvent]:
        """A refund of a subscription's first payment moved onto its order's key, when the API can say
        which order the subscription began with."""
        if self._lookup is None or not any(_needs_its_order(event) for event in events):
            return events
        attributes = _attributes(load_json_object(request.body)["data"], "subscription-invoices")
        subscription_id = str(attributes.get("subscription_id") or "")
        if not subscription_id.isdigit():
            return events
        order_id = await _lemonsqueezy_api.subscription_order_id(self._lookup, subscription_id)
        if order_id is None:
            return events
        # The order's own figures decide whether this is all of it (an order may hold more than the
        # first invoice, a setup fee). order_refunded for the same money reports the same cumulative
        # total on the same key, and the ledger keeps the larger of the two, never their sum.
        return [
            replace(
                event,
                transaction_key=f"lemonsqueezy:order:{order_id}",
                reason=None,
                full_refund=None,
                sale_amount=None,
                sale_tax=None,
            )
            if _needs_its_order(event)
            else event
            for event in events
        ]

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        payload = load_json_object(request.body)
        meta = payload.get("meta")
        if not isinstance(meta, Mapping):
            raise PayloadError("missing meta object")
        event = meta.get("event_name") or request.header(EVENT_HEADER)
        if not isinstance(event, str) or not event:
            raise PayloadError("missing meta.event_name")
        handler = self._handlers.get(event)
        if handler is None:
            return [ignored(event, _IGNORED_REASONS.get(event, "event not used by the bridge"))]
        data = payload.get("data")
        if not isinstance(data, Mapping):
            raise PayloadError(f"{event}: missing data object")
        try:
            return [handler(event, meta, data)]
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise PayloadError(f"{event}: {exc}") from None

    async def aclose(self) -> None:
        if self._lookup is not None:
            await self._lookup.aclose()

    def _order_created(self, event: str, meta: Json, data: Json) -> NormalizedEvent:
        attributes = _attributes(data, "orders")
        status = attributes.get("status")
        if status in ("pending", "failed"):
            return ignored(event, f"order status is {status}, not paid")
        currency = _currency(attributes)
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event,
            transaction_key=f"lemonsqueezy:order:{_data_id(data)}",
            amount=_money(attributes, "total", currency),
            tax=_tax(attributes, currency),
            currency=currency,
            customer=_customer(meta, attributes),
            product_id=_first_item(attributes, "product_id"),
            product_type=_first_item(attributes, "variant_id"),
            test_mode=_test_mode(meta, attributes),
            occurred_at=_timestamp(attributes.get("created_at")),
            # `read` puts the code here when it can ask Lemon Squeezy for it
            reason=CODE_UNKNOWN if _discounted(attributes) else None,
        )

    def _order_refunded(self, event: str, meta: Json, data: Json) -> NormalizedEvent:
        attributes = _attributes(data, "orders")
        return _refund(
            event,
            f"lemonsqueezy:order:{_data_id(data)}",
            meta,
            attributes,
            product_id=_first_item(attributes, "product_id"),
            product_type=_first_item(attributes, "variant_id"),
        )

    def _invoice_paid(self, event: str, meta: Json, data: Json) -> NormalizedEvent:
        attributes = _attributes(data, "subscription-invoices")
        reason = _billing_reason(attributes)
        if reason == "initial":
            return ignored(event, "first subscription payment: counted by order_created under the order key")
        # a renewal, or a plan-change charge (`updated`: the prorated difference): money paid, its own invoice
        currency = _currency(attributes)
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event,
            transaction_key=f"lemonsqueezy:invoice:{_data_id(data)}",
            amount=_money(attributes, "total", currency),
            tax=_tax(attributes, currency),
            currency=currency,
            customer=_customer(meta, attributes),
            test_mode=_test_mode(meta, attributes),
            occurred_at=_timestamp(attributes.get("created_at")),
        )

    def _invoice_refunded(self, event: str, meta: Json, data: Json) -> NormalizedEvent:
        attributes = _attributes(data, "subscription-invoices")
        refund = _refund(event, f"lemonsqueezy:invoice:{_data_id(data)}", meta, attributes)
        if _billing_reason(attributes) != "initial":
            return refund
        # The first payment is booked under its order's key, which a subscription invoice does not carry
        # (it names only its subscription). Refunding the order sends order_refunded, which reverses the
        # sale; refunding this invoice may not, so the operator is told instead of a guess being made.
        subscription = _text(str(attributes.get("subscription_id") or "")) or "?"
        return replace(
            refund,
            transaction_key=None,
            reason=f"needs attention: refund of the first payment of subscription {subscription}; its sale"
            " (lemonsqueezy:order:<order id>) is reversed by that order's order_refunded — if none arrives,"
            " reverse it by hand (an api_key on the endpoint lets the bridge find the order itself)",
        )


def _refund(
    event: str,
    key: str,
    meta: Json,
    attributes: Json,
    product_id: str | None = None,
    product_type: str | None = None,
) -> NormalizedEvent:
    """A refund as Lemon Squeezy reports it: the cumulative gross `refunded_amount` of an order of
    `total`, of which `tax` is tax (the ledger pro-rates the refund by that share). The amount of this
    one refund is not reported."""
    currency = _currency(attributes)
    total = from_minor_units(_cents(attributes, "total"), currency)
    refunded_total = None
    if attributes.get("refunded_amount") is not None:
        refunded_total = from_minor_units(_cents(attributes, "refunded_amount"), currency)
    if attributes.get("status") == "refunded" or attributes.get("refunded") is True:
        full_refund: bool | None = True
    elif refunded_total is not None:
        full_refund = refunded_total >= total
    else:
        full_refund = None
    return NormalizedEvent(
        kind=EventKind.REFUND,
        event_type=event,
        transaction_key=key,
        currency=currency,
        customer=_customer(meta, attributes),
        product_id=product_id,
        product_type=product_type,
        test_mode=_test_mode(meta, attributes),
        occurred_at=_timestamp(attributes.get("refunded_at") or attributes.get("updated_at")),
        full_refund=full_refund,
        refunded_total=refunded_total,
        sale_amount=total,
        sale_tax=_tax(attributes, currency),
    )


# --- payload helpers --------------------------------------------------------------------------------


def _needs_its_order(event: NormalizedEvent) -> bool:
    # `_invoice_refunded` of a first payment: a refund without a key, waiting for its order's
    return (
        event.kind is EventKind.REFUND
        and event.event_type == "subscription_payment_refunded"
        and event.transaction_key is None
    )


def _peek_event_name(body: bytes) -> str | None:
    try:
        meta = load_json_object(body).get("meta")
    except PayloadError:
        return None
    event = meta.get("event_name") if isinstance(meta, Mapping) else None
    return event if isinstance(event, str) and event else None


def _object_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ValueError("data.id is not an id")
    return str(value)


def _discounted(attributes: Json) -> bool:
    value = attributes.get("discount_total")
    return isinstance(value, int | Decimal) and not isinstance(value, bool) and value > 0


def _discounted_order(body: bytes) -> str | None:
    """The id of the order an `order_created` announces, when a discount took something off it."""
    payload = load_json_object(body)
    meta, data = payload.get("meta"), payload.get("data")
    if not isinstance(meta, Mapping) or meta.get("event_name") != "order_created" or not isinstance(data, Mapping):
        return None
    attributes = data.get("attributes")
    if not isinstance(attributes, Mapping) or not _discounted(attributes):
        return None
    return _data_id(data)


def _data_id(data: Json) -> str:
    try:
        return _object_id(data.get("id"))
    except ValueError:
        raise PayloadError("missing data.id") from None


def _attributes(data: Json, expected_type: str) -> Json:
    # a wrong object type would put a foreign id under this key family
    kind = data.get("type")
    if kind is not None and kind != expected_type:
        raise PayloadError(f"data.type is not {expected_type!r} ({describe(kind)})")
    attributes = data.get("attributes")
    if not isinstance(attributes, Mapping):
        raise PayloadError("missing data.attributes")
    return attributes


def _cents(attributes: Json, field: str) -> int | Decimal:
    value = attributes.get(field)
    if value is None:
        raise PayloadError(f"missing data.attributes.{field}")
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise PayloadError(f"data.attributes.{field} is not an amount in cents")
    if value < 0:
        raise PayloadError(f"data.attributes.{field} is negative")
    return value


def _money(attributes: Json, field: str, currency: str) -> Decimal:
    return from_minor_units(_cents(attributes, field), currency)


def _tax(attributes: Json, currency: str) -> Decimal | None:
    return None if attributes.get("tax") is None else _money(attributes, "tax", currency)


def _currency(attributes: Json) -> str:
    code = attributes.get("currency")
    if not isinstance(code, str) or not code:
        raise PayloadError("missing data.attributes.currency")
    try:
        return normalize_currency(code)
    except ValueError:
        raise PayloadError(f"unknown currency ({describe(code)})") from None


def _billing_reason(attributes: Json) -> str:
    reason = attributes.get("billing_reason")
    if reason not in ("initial", "renewal", "updated"):
        # an unknown reason could be a payment: keep the call for replay rather than guess
        raise PayloadError(f"unknown data.attributes.billing_reason ({describe(reason)})")
    return str(reason)


def _customer(meta: Json, attributes: Json) -> CustomerFacts:
    customer_id = attributes.get("customer_id")
    return CustomerFacts(
        email=_text(attributes.get("user_email")),
        customer_id=None if customer_id is None or isinstance(customer_id, bool) else str(customer_id),
        name=_text(attributes.get("user_name")),
        metadata=_metadata(meta.get("custom_data")),
    )


def _metadata(custom_data: Any) -> dict[str, str]:
    """`meta.custom_data` as strings; URL-passed values already are, API-passed ones may be numbers."""
    if not isinstance(custom_data, Mapping):
        return {}
    metadata: dict[str, str] = {}
    for name, value in custom_data.items():
        if isinstance(value, bool):
            metadata[str(name)] = "true" if value else "false"
        elif isinstance(value, str | int | Decimal):
            metadata[str(name)] = str(value)
    return metadata


def _first_item(attributes: Json, field: str) -> str | None:
    item = attributes.get("first_order_item")
    value = item.get(field) if isinstance(item, Mapping) else None
    return None if value is None or isinstance(value, bool) else str(value)


def _test_mode(meta: Json, attributes: Json) -> bool:
    # either flag marks test data; a test payment must never reach a live program
    return meta.get("test_mode") is True or attributes.get("test_mode") is True


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
