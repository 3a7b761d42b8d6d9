"""WooCommerce: `X-WC-Webhook-Signature` base64 HMAC-SHA256 of the raw body; order state read as sales and refunds.

WooCommerce has no "paid" or "refunded" topic. Its `order.created` / `order.updated` deliveries carry the
whole REST API order as it is at delivery time, so the adapter reads the order's state: a paid status
(`processing`, `completed`) with a `date_paid` is a sale of `woocommerce:order:<id>`, and the `refunds[]`
list is the cumulative refunded amount. `order.updated` fires on every edit, so the same sale is seen
many times; the core turns repeats into no-ops. WooCommerce never retries a failed delivery.

When a webhook is saved, WooCommerce posts an unsigned form body `webhook_id=<n>` to check the URL; that
exact shape is acknowledged without being stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from bridge.events import CustomerFacts, EventKind, NormalizedEvent, ignored
from bridge.money import from_major_units, normalize_currency, to_decimal
from providers._payload import discount_code, load_json_object
from providers.base import (
    AcknowledgeOnly,
    AdapterOptions,
    PayloadError,
    ProviderAdapter,
    SignedRequest,
    WebhookRequest,
    body_hash,
)
from providers.signatures import Algorithm, sign_hmac, verify_hmac

SIGNATURE_HEADER = "x-wc-webhook-signature"
TOPIC_HEADER = "x-wc-webhook-topic"
ORDER_TOPICS = frozenset({"order.created", "order.updated"})

# `WC_Webhook::deliver_ping()` posts exactly `'webhook_id=' . $this->get_id()`, nothing else
_PING = re.compile(rb"webhook_id=[0-9]{1,20}")
_SHOP_NAME = r"^[A-Za-z0-9._-]+$"

_IGNORED_TOPICS = {
    "order.deleted": "order moved to the trash; a refund, not a deletion, reverses a sale",
    "order.restored": "order restored from the trash; its next order.updated carries its state",
}
_IGNORED_PREFIXES = {
    "action.": "custom action topic carries only an id; subscribe the bridge to order.updated instead",
    "subscription.": "WooCommerce Subscriptions record; every renewal arrives as an order of its own",
    "product.": "not an order",
    "coupon.": "not an order",
    "customer.": "not an order",
}

Json = Mapping[str, Any]


class WooCommerceOptions(AdapterOptions):
    """Endpoint settings for WooCommerce."""

    # the statuses meaning "paid" (with a date_paid); add custom statuses a plugin moves paid orders to
    paid_statuses: tuple[str, ...] = ("processing", "completed")
    # a paid order set to `cancelled` by hand: reverse its sale, or leave it standing
    cancelled_after_payment: Literal["refund", "ignore"] = "refund"
    # order ids are per shop: name the shop in every key when several shops feed one Partnero program
    shop: str | None = Field(default=None, pattern=_SHOP_NAME)
    # the filter `woocommerce_webhook_hash_algorithm` can change it; WooCommerce's default is SHA-256
    signature_algorithm: Algorithm = "sha256"
    # WooCommerce orders carry no test flag; an endpoint fed by a staging shop says so here
    sandbox: bool = False

    @field_validator("paid_statuses")
    @classmethod
    def _some_statuses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        statuses = tuple(status.strip().removeprefix("wc-") for status in value)
        if not statuses or not all(statuses):
            raise ValueError("list at least one order status")
        if "refunded" in statuses or "cancelled" in statuses:
            raise ValueError("refunded and cancelled orders are not paid")
        return statuses


class WooCommerceAdapter(ProviderAdapter):
    name: ClassVar[str] = "woocommerce"
    Options: ClassVar[type[AdapterOptions]] = WooCommerceOptions
    # chargebacks surface only as status changes (on-hold, refunded): there is no dispute outcome
    reports_dispute_outcome: ClassVar[bool] = False

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        if any(not secret for secret in self.secrets):
            # an empty secret is WooCommerce's default and signs with an empty key anyone can compute
            raise ValueError("woocommerce: empty webhook secret")
        self.settings = options if isinstance(options, WooCommerceOptions) else WooCommerceOptions()
        keys: list[bytes] = []
        for secret in self.secrets:
            # WooCommerce signs with wp_specialchars_decode(secret): a secret copied with `&amp;` still works
            for form in (secret, wp_specialchars_decode(secret)):
                key = form.encode("utf-8")
                if key not in keys:
                    keys.append(key)
        self._keys = tuple(keys)
        self._key_prefix = f"woocommerce:{self.settings.shop}:order:" if self.settings.shop else "woocommerce:order:"

    # --- authenticity ------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float) -> None:
        signature = request.header(SIGNATURE_HEADER)
        if signature is None and request.header(TOPIC_HEADER) is None and _PING.fullmatch(request.body):
            raise AcknowledgeOnly("WooCommerce webhook ping (unsigned webhook_id=<n>, sent when a webhook is saved)")
        # no timestamp in the scheme, so there is no replay window to check
        verify_hmac(
            self._keys,
            request.body,
            signature,
            algorithm=self.settings.signature_algorithm,
            encoding="base64",
            header="X-WC-Webhook-Signature",
        )

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        webhook_id = "1"
        # WooCommerce's delivery id is wp_hash(webhook id . current second); any 32 hex digits look alike
        delivery_id = hashlib.md5(f"{webhook_id}{int(now)}".encode(), usedforsecurity=False).hexdigest()
        headers = {
            SIGNATURE_HEADER: sign_hmac(secret.encode("utf-8"), body, self.settings.signature_algorithm, "base64"),
            TOPIC_HEADER: "order.updated",
            "x-wc-webhook-resource": "order",
            "x-wc-webhook-event": "updated",
            "x-wc-webhook-source": "https://shop.example.com/",
            "x-wc-webhook-id": webhook_id,
            "x-wc-webhook-delivery-id": delivery_id,
            "user-agent": "WooCommerce/9.9.5 Hookshot (WordPress/6.8.2)",
        }
        return SignedRequest(headers=headers)

    def delivery_id(self, request: WebhookRequest) -> str:
        """A hash of the body, on purpose not `X-WC-Webhook-Delivery-ID`.

        That header is wp_hash(webhook id . current second): two orders delivered by one webhook within
        the same second share it, so deduplicating on it would drop the second. WooCommerce never
        retries, and an identical body says nothing new, so the body hash loses nothing.
        """
        return body_hash(request.body)

    # --- parsing -----------------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        if _PING.fullmatch(request.body):
            return [ignored("ping", "webhook ping sent when a webhook is saved; no order")]
        order = load_json_object(request.body)
        topic = request.header(TOPIC_HEADER)
        if not topic:
            if "order_key" not in order:
                raise PayloadError("missing X-WC-Webhook-Topic header")
            # a REST API order fetched for reconciliation has no topic; it reads like order.updated
            topic = "order.updated"
        if topic not in ORDER_TOPICS:
            return [ignored(topic, _ignored_reason(topic))]
        try:
            return self._order_events(topic, order)
        # ArithmeticError: decimal.Overflow from an absurd exponent is not an InvalidOperation
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{topic}: {exc}") from None

    def _order_events(self, topic: str, order: Json) -> list[NormalizedEvent]:
        status = order.get("status")
        if not isinstance(status, str) or not status:
            raise ValueError("order without status")
        paid = _date(order, "date_paid") is not None
        if status in self.settings.paid_statuses:
            if not paid:
                return [ignored(topic, f"order status {status} without date_paid: not paid")]
            sale = self._sale(topic, order)
            if sale.kind is EventKind.IGNORED:
                return [sale]
            if _refunds(order):
                # a paid order with refunds: the sale (a no-op once booked) then the cumulative refund
                return [sale, self._refund(topic, order, full=None)]
            return [sale]
        if status == "refunded":
            return [self._refund(topic, order, full=True)]
        if status == "cancelled":
            if not paid:
                return [ignored(topic, "order cancelled before payment")]
            if self.settings.cancelled_after_payment == "ignore":
                return [ignored(topic, "paid order cancelled; kept standing (cancelled_after_payment: ignore)")]
            return [self._refund(topic, order, full=True)]
        return [ignored(topic, f"order status {status}: not paid")]

    def _sale(self, topic: str, order: Json) -> NormalizedEvent:
        currency = normalize_currency(_text(order, "currency"))
        amount = from_major_units(_order_total(order), currency)
        if amount < 0:
            raise ValueError("negative order total")
        if amount == 0:
            return ignored(topic, "order total is 0 (free order or full discount)")
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=topic,
            transaction_key=self._key_prefix + _order_id(order),
            amount=amount,
            tax=_total_tax(order, currency),
            currency=currency,
            customer=_customer(order),
            product_id=_single_product(order),
            test_mode=self.settings.sandbox,
            occurred_at=_date(order, "date_paid"),
            coupon_code=_first_coupon(order),
        )

    def _refund(self, topic: str, order: Json, *, full: bool | None) -> NormalizedEvent:
        currency = normalize_currency(_text(order, "currency"))
        total = from_major_units(_order_total(order), currency)
        refunds = _refunds(order)
        refunded = from_major_units(sum(refunds, Decimal(0)), currency) if refunds else None
        if full is None and refunded is not None:
            full = refunded >= total
        return NormalizedEvent(
            kind=EventKind.REFUND,
            event_type=topic,
            transaction_key=self._key_prefix + _order_id(order),
            currency=currency,
            customer=_customer(order),
            product_id=_single_product(order),
            test_mode=self.settings.sandbox,
            occurred_at=_date(order, "date_modified"),
            full_refund=full,
            refunded_total=refunded,
            sale_amount=total,
            # refunds[] carries only each refund's gross total: the ledger takes off the order's tax share
            sale_tax=_total_tax(order, currency),
        )


def wp_specialchars_decode(text: str) -> str:
    """WordPress's `wp_specialchars_decode($text, ENT_QUOTES)`: only &, <, >, " and ' entities are decoded."""
    if "&" not in text:
        return text
    # zero padding on numeric entities is removed first, then one strtr-like pass decodes
    for pattern, canonical in _ENTITY_PADDING:
        text = pattern.sub(canonical, text)
    return _ENTITY.sub(lambda match: _ENTITIES[match.group(0)], text)


_ENTITIES = {
    "&#039;": "'",
    "&#x27;": "'",
    "&quot;": '"',
    "&#034;": '"',
    "&#x22;": '"',
    "&lt;": "<",
    "&#060;": "<",
    "&gt;": ">",
    "&#062;": ">",
    "&amp;": "&",
    "&#038;": "&",
    "&#x26;": "&",
}
_ENTITY = re.compile("|".join(re.escape(entity) for entity in sorted(_ENTITIES, key=len, reverse=True)))
_ENTITY_PADDING = (
    (re.compile(r"&#0*39;"), "&#039;"),
    (re.compile(r"&#x0*27;", re.IGNORECASE), "&#x27;"),
    (re.compile(r"&#0*34;"), "&#034;"),
    (re.compile(r"&#x0*22;", re.IGNORECASE), "&#x22;"),
    (re.compile(r"&#0*60;"), "&#060;"),
    (re.compile(r"&#0*62;"), "&#062;"),
    (re.compile(r"&#0*38;"), "&#038;"),
    (re.compile(r"&#x0*26;", re.IGNORECASE), "&#x26;"),
)


def _ignored_reason(topic: str) -> str:
    if topic in _IGNORED_TOPICS:
        return _IGNORED_TOPICS[topic]
    for prefix, reason in _IGNORED_PREFIXES.items():
        if topic.startswith(prefix):
            return reason
    return "topic not used by the bridge"


def _order_id(order: Json) -> str:
    value = order.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
        raise ValueError("order without id")
    return str(value).strip()


def _text(order: Json, field: str) -> str:
    value = order.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"missing {field}")
    return value


def _order_total(order: Json) -> Decimal:
    total = _decimal_string(order.get("total"), "total")
    if total < 0:
        raise ValueError(f"total {total} is negative")
    return total


def _total_tax(order: Json, currency: str) -> Decimal | None:
    """`total_tax`, the tax inside `total` (items and shipping), when the order reports it."""
    if order.get("total_tax") is None:
        return None
    return from_major_units(abs(_decimal_string(order["total_tax"], "total_tax")), currency)


def _decimal_string(value: Any, field: str) -> Decimal:
    """A REST API money field: a decimal string such as `"29.35"` or `"-10.00"`."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"{field} is not a decimal amount")
    return to_decimal(value)


def _refunds(order: Json) -> list[Decimal]:
    """The amount of each refund in `refunds[]`; WooCommerce sends the totals negative (`"-10.00"`)."""
    refunds = order.get("refunds")
    if refunds is None:
        return []
    if not isinstance(refunds, list):
        raise ValueError("refunds is not a list")
    amounts = []
    for refund in refunds:
        if not isinstance(refund, Mapping):
            raise ValueError("refund entry is not an object")
        amounts.append(abs(_decimal_string(refund.get("total"), "refunds[].total")))
    return amounts


def _customer(order: Json) -> CustomerFacts:
    billing = order.get("billing")
    if not isinstance(billing, Mapping):
        billing = {}
    customer_id = order.get("customer_id")
    # 0 is a guest checkout, not a WordPress user
    has_user = isinstance(customer_id, int | str) and not isinstance(customer_id, bool) and str(customer_id) != "0"
    names = [part for part in (billing.get("first_name"), billing.get("last_name")) if isinstance(part, str) and part]
    return CustomerFacts(
        email=_optional_text(billing.get("email")),
        customer_id=str(customer_id) if has_user and str(customer_id).strip() else None,
        name=" ".join(names) or None,
        metadata=_metadata(order.get("meta_data")),
    )


def _metadata(meta_data: Any) -> dict[str, str]:
    """`meta_data: [{id, key, value}]` as a dict; a repeated key keeps its first value, as `get_meta` does.

    Keys starting with `_` (hidden from the order screen) are kept: merchants store the customer key there.
    """
    if not isinstance(meta_data, list):
        return {}
    metadata: dict[str, str] = {}
    for entry in meta_data:
        if not isinstance(entry, Mapping):
            continue
        key, value = entry.get("key"), entry.get("value")
        if not isinstance(key, str) or not key or key in metadata:
            continue
        if isinstance(value, bool):
            metadata[key] = "true" if value else "false"
        elif isinstance(value, str | int | Decimal):
            metadata[key] = str(value)
    return metadata


def _first_coupon(order: Json) -> str | None:
    """The first coupon code applied to the order (`coupon_lines[].code`, in the order WooCommerce lists them)."""
    lines = order.get("coupon_lines")
    codes = (discount_code(line) for line in lines) if isinstance(lines, list) else iter(())
    return next((code for code in codes if code), None)


def _single_product(order: Json) -> str | None:
    """The product id of a one-item order; a several-item order has no single product to rate."""
    items = order.get("line_items")
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], Mapping):
        return None
    product_id = items[0].get("product_id")
    if isinstance(product_id, bool) or not isinstance(product_id, int | str) or str(product_id) in ("", "0"):
        return None
    return str(product_id)


def _date(order: Json, field: str) -> datetime | None:
    """`<field>_gmt` (UTC without offset) or, failing that, `<field>` in the shop's time zone, naive."""
    for name, zone in ((f"{field}_gmt", UTC), (field, None)):
        value = order.get(name)
        if not isinstance(value, str) or not value:
            continue
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            continue
        return parsed.replace(tzinfo=zone) if parsed.tzinfo is None and zone else parsed
    return None


def _optional_text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
