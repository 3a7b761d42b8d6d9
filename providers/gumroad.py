"""Gumroad: unsigned Ping and resource-subscription posts, checked by a URL token or HTTP Basic auth.

Gumroad signs nothing. The merchant appends `?token=<secret>` to the URL it registers, or puts
`user:<secret>@` in it, which Gumroad sends as `Authorization: Basic`; that is all `verify` can check.
The body is a Rails form post: nested hashes arrive as `url_params[user_id]=...`, booleans as
`true`/`false`. Each post describes one purchase (`sale_id`) with its current
`refunded`/`disputed`/`dispute_won` flags; a renewal is its own purchase.

`price` is always integer **USD cents**, whatever the product is listed in: Gumroad converts the
listed price to USD and charges that (`price_cents = displayed_price_usd_cents` in its
`app/models/purchase.rb`), while `currency` is the listing's currency (`link.price_currency_type`). A
€10 product arrives as `price=1085&currency=eur`, so the sale is booked as 10.85 USD — the money the
buyer paid — and Partnero converts it to the program's currency.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_minor_units
from bridge.redact import describe
from providers.base import (
    AdapterOptions,
    CheckoutLink,
    PayloadError,
    ProviderAdapter,
    SignatureError,
    SignedRequest,
    WebhookRequest,
    body_hash,
)

TOKEN_PARAM = "token"
PURCHASE_RESOURCES = frozenset({"sale", "refund", "dispute", "dispute_won"})
SUBSCRIPTION_RESOURCES = frozenset(
    {"cancellation", "subscription_ended", "subscription_restarted", "subscription_updated"}
)
# Gumroad adds this field to re-sent posts only; a retry must not look like a new delivery
RETRY_FIELD = "retry_count"
DELIVERY_FLAGS = ("refunded", "disputed", "dispute_won", "test")
_WHOLE_CENTS = re.compile(r"[0-9]+")
# the currency of `price` and `gift_price` in every Ping
PRICE_CURRENCY = "USD"

Fields = Mapping[str, str]


class GumroadOptions(AdapterOptions):
    """`seller_id`: when set, posts about any other Gumroad seller are ignored (a reused URL)."""

    seller_id: str | None = None


class GumroadAdapter(ProviderAdapter):
    name = "gumroad"
    Options = GumroadOptions
    # `dispute_won` is announced, a lost dispute never is: an opened dispute has to reverse the sale
    reports_dispute_outcome: ClassVar[bool] = False
    # any query parameter of a product URL comes back as `url_params[<name>]` (metadata), see the sheet
    checkout_links: ClassVar[tuple[CheckoutLink, ...]] = (
        CheckoutLink(hosts=("gumroad.com",), param="{name}", path_prefixes=("/l/",)),
    )

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        if any(not secret for secret in self.secrets):
            # it would let a bare `?token=` through
            raise ValueError("gumroad: empty URL token")
        self._keys = tuple(secret.encode("utf-8") for secret in self.secrets)
        self._seller_id = options.seller_id if isinstance(options, GumroadOptions) else None

    def verify(self, request: WebhookRequest, now: float) -> None:
        offered: list[str] = []
        token = request.query.get(TOKEN_PARAM)
        if token is not None:
            offered.append(token)
        authorization = request.header("authorization")
        password = basic_auth_password(authorization) if authorization else None
        if password is not None:
            offered.append(password)
        if not offered:
            if authorization:
                raise SignatureError.malformed("authorization")
            raise SignatureError.missing(TOKEN_PARAM)
        if not self._any_secret_matches(offered):
            raise SignatureError.mismatch(TOKEN_PARAM)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        return SignedRequest(query_string=urlencode({TOKEN_PARAM: secret}))

    def content_type(self) -> str:
        return "application/x-www-form-urlencoded"

    def delivery_id(self, request: WebhookRequest) -> str:
        """`<resource>:<sale_id>` plus the flags that are set, so a refund is not the sale's duplicate."""
        try:
            pairs = read_pairs(request.body)
        except PayloadError:
            return body_hash(request.body)
        fields = dict(pairs)
        sale_id = fields.get("sale_id")
        if not sale_id:
            return body_hash(without_retry_count(request.body, pairs))
        parts = [fields.get("resource_name") or "sale", sale_id]
        parts += [flag for flag in DELIVERY_FLAGS if is_true(fields, flag)]
        return ":".join(parts)

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        fields = dict(read_pairs(request.body))
        resource = fields.get("resource_name") or "sale"
        if resource in SUBSCRIPTION_RESOURCES:
            return [ignored(resource, "subscription notice; every charge arrives as its own sale")]
        if resource not in PURCHASE_RESOURCES:
            return [ignored(resource, "resource_name the bridge does not handle")]
        sale_id = fields.get("sale_id")
        if not sale_id:
            raise PayloadError(f"{resource} post without sale_id")
        if self._seller_id is not None and fields.get("seller_id") != self._seller_id:
            return [ignored(resource, "seller_id is not the seller configured for this endpoint")]
        try:
            return [purchase_event(resource, sale_id, fields)]
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise PayloadError(f"unreadable Gumroad {resource} post: {exc}") from None

    def _any_secret_matches(self, offered: Sequence[str]) -> bool:
        # no early exit: every pair is compared so timing does not reveal which one matched
        matched = False
        for value in offered:
            sent = value.encode("utf-8")
            for key in self._keys:
                matched |= hmac.compare_digest(sent, key)
        return matched


def purchase_event(resource: str, sale_id: str, fields: Fields) -> NormalizedEvent:
    """What one post about one purchase means; the flags describe the purchase as it is now."""
    kind, dispute_state = classify(resource, fields)
    common: dict[str, Any] = {
        "event_type": resource,
        "transaction_key": f"gumroad:sale:{sale_id}",
        "customer": customer_facts(fields),
        "product_id": text(fields, "product_id"),
        "product_type": product_type(fields),
        "test_mode": is_true(fields, "test"),
    }
    if kind is EventKind.SALE:
        amount, currency = purchase_amount(fields, resource, required=True)
        if not amount:
            return ignored(resource, "price is 0 (free or fully discounted purchase)")
        if is_true(fields, "is_preorder_authorization"):
            return ignored(resource, "pre-order authorization: the card is not charged yet")
        occurred_at = timestamp(fields.get("sale_timestamp"))
        coupon_code = text(fields, "offer_code")
        return NormalizedEvent(
            kind=kind, amount=amount, currency=currency, occurred_at=occurred_at, coupon_code=coupon_code, **common
        )
    sale_amount, currency = purchase_amount(fields, resource, required=False)
    if kind is EventKind.REFUND:
        # Gumroad sets `refunded` only once refunds reach the sale total and pings every refund
        full_refund = None if "refunded" not in fields else is_true(fields, "refunded")
        return NormalizedEvent(kind=kind, currency=currency, sale_amount=sale_amount, full_refund=full_refund, **common)
    return NormalizedEvent(kind=kind, currency=currency, sale_amount=sale_amount, dispute_state=dispute_state, **common)


def classify(resource: str, fields: Fields) -> tuple[EventKind, DisputeState | None]:
    if resource == "refund":
        return EventKind.REFUND, None
    if resource == "dispute_won":
        return EventKind.DISPUTE, DisputeState.WON
    if resource == "dispute":
        return EventKind.DISPUTE, DisputeState.OPENED
    # a `sale` post sent (or re-sent from the dashboard) after the fact carries the purchase's state:
    # refunded is a refund, an open chargeback is a dispute, a won chargeback leaves the sale standing
    if is_true(fields, "refunded"):
        return EventKind.REFUND, None
    if is_true(fields, "disputed") and not is_true(fields, "dispute_won"):
        return EventKind.DISPUTE, DisputeState.OPENED
    return EventKind.SALE, None


def purchase_amount(fields: Fields, resource: str, *, required: bool) -> tuple[Decimal | None, str | None]:
    """What the buyer paid, in USD; a gift receipt is priced 0, the gifter's payment is `gift_price`.

    Both are USD cents (see the module docstring); `currency` names the listing, not the money.
    """
    field = "price"
    if is_true(fields, "is_gift_receiver_purchase") and fields.get("gift_price"):
        field = "gift_price"
    raw = fields.get(field)
    if not raw:
        if required:
            raise PayloadError(f"{resource} post without {field}")
        return None, None
    if not _WHOLE_CENTS.fullmatch(raw):
        raise PayloadError(f"{field} is not a whole number of cents ({describe(raw)})")
    try:
        return from_minor_units(raw, PRICE_CURRENCY), PRICE_CURRENCY
    except ValueError as exc:
        raise PayloadError(str(exc)) from None


def customer_facts(fields: Fields) -> CustomerFacts:
    metadata = bracketed(fields, "custom_fields")
    # the product-URL parameters are the merchant's own data: they win over what the buyer typed
    metadata.update(bracketed(fields, "url_params"))
    return CustomerFacts(
        email=text(fields, "email"),
        customer_id=text(fields, "purchaser_id"),
        name=text(fields, "full_name"),
        metadata=metadata,
    )


def product_type(fields: Fields) -> str | None:
    variants = bracketed(fields, "variants")
    if variants:
        return ", ".join(f"{category}: {choice}" for category, choice in variants.items())
    return text(fields, "variants")


def bracketed(fields: Fields, prefix: str) -> dict[str, str]:
    """The flat hash Rails sent as `prefix[name]=value`; deeper nesting is skipped."""
    found: dict[str, str] = {}
    opening = prefix + "["
    for key, value in fields.items():
        if not (key.startswith(opening) and key.endswith("]")):
            continue
        name = key[len(opening) : -1]
        if not name or "[" in name or "]" in name:
            continue
        # Gumroad escapes brackets inside names as %5B/%5D before form-encoding the key
        found[name.replace("%5B", "[").replace("%5D", "]")] = value
    return found


def read_pairs(body: bytes) -> list[tuple[str, str]]:
    """The posted fields in order. Gumroad can be set to post JSON: it is flattened to the same keys."""
    try:
        content = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8 text") from None
    if content.lstrip().startswith("{"):
        return json_pairs(content)
    try:
        return parse_qsl(content, keep_blank_values=True, errors="strict")
    except ValueError:
        raise PayloadError("body is not a form post") from None


def json_pairs(content: str) -> list[tuple[str, str]]:
    try:
        data = json.loads(content, parse_float=Decimal)
    except ValueError:
        raise PayloadError("body is not valid JSON") from None
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            for name, inner in value.items():
                scalar = json_scalar(inner)
                if scalar is not None:
                    escaped = str(name).replace("[", "%5B").replace("]", "%5D")
                    pairs.append((f"{key}[{escaped}]", scalar))
        elif (scalar := json_scalar(value)) is not None:
            pairs.append((key, scalar))
    return pairs


def json_scalar(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | Decimal):
        return str(value)
    return None


def without_retry_count(body: bytes, pairs: Sequence[tuple[str, str]]) -> bytes:
    """The body as it was on the first attempt, for hashing."""
    if body.lstrip().startswith(b"{"):
        kept = {key: value for key, value in pairs if key != RETRY_FIELD}
        return json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()
    marker = RETRY_FIELD.encode()
    return b"&".join(part for part in body.split(b"&") if part.split(b"=", 1)[0] != marker)


def basic_auth_password(authorization: str) -> str | None:
    """The password of an `Authorization: Basic` header, or None when it is not one."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


def is_true(fields: Fields, name: str) -> bool:
    return fields.get(name, "").strip().lower() == "true"


def text(fields: Fields, name: str) -> str | None:
    return fields.get(name) or None


def timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
