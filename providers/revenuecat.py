"""RevenueCat: a static `Authorization` header value, and the optional HMAC signature; keyed per store transaction.

RevenueCat sends back, verbatim, the authorization header value the merchant typed into the webhook
integration, so that value is the endpoint's secret; it does not authenticate the body. Integrations
may also opt in to signing: `X-RevenueCat-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>">`, several `v1` during a rotation. With `signing_secret` set, that signature is
required as well, so the body itself is authenticated.

Each purchase, renewal and one-off purchase is its own store transaction: the key is
`revenuecat:<store>:<transaction_id>` (ids come from different stores, so the store is part of the key).
A refund arrives as `CANCELLATION` with `cancel_reason` `CUSTOMER_SUPPORT` naming the refunded
transaction. Prices are JSON floats, read as `Decimal`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from bridge.events import CustomerFacts, EventKind, NormalizedEvent, ignored
from bridge.money import from_major_units, normalize_currency
from bridge.redact import describe
from providers._payload import discount_code
from providers.base import (
    AdapterOptions,
    PayloadError,
    ProviderAdapter,
    SignatureError,
    SignedRequest,
    WebhookRequest,
    body_hash,
)
from providers.signatures import STANDARD_TOLERANCE_SECONDS, sign_timestamped_hmac, verify_timestamped_hmac

AUTHORIZATION_HEADER = "authorization"
SIGNATURE_HEADER = "x-revenuecat-webhook-signature"
BEARER = "Bearer "
ANONYMOUS_PREFIX = "$RCAnonymousID:"
SALE_TYPES = {"INITIAL_PURCHASE": "subscription", "RENEWAL": "subscription", "NON_RENEWING_PURCHASE": "one_time"}
REFUND_REASON = "CUSTOMER_SUPPORT"
_TEST_ENVIRONMENTS = frozenset({"SANDBOX"})
_TEST_STORES = frozenset({"TEST_STORE"})

_IGNORED = {
    "TEST": "test event sent from the RevenueCat dashboard",
    "PRODUCT_CHANGE": "plan change announced; its money arrives as a later RENEWAL or INITIAL_PURCHASE",
    "UNCANCELLATION": "auto-renewal switched back on; no payment",
    "EXPIRATION": "subscription ended; no payment",
    "BILLING_ISSUE": "the store could not charge; no payment",
    "SUBSCRIPTION_PAUSED": "subscription paused; no payment",
    "SUBSCRIPTION_EXTENDED": "subscription extended by the developer or the store; no payment",
    "TRANSFER": "purchases moved to another app user id; no payment",
    "SUBSCRIBER_ALIAS": "app user ids merged; no payment",
    "TEMPORARY_ENTITLEMENT_GRANT": "access granted while the store was unreachable; the purchase arrives later",
    "INVOICE_ISSUANCE": "invoice issued, not paid yet; the payment arrives as a purchase or renewal",
    "VIRTUAL_CURRENCY_TRANSACTION": "virtual currency balance change; its purchase is announced on its own",
    "REFUND_REVERSED": "a refund was reversed; the reversed sale is not re-booked (add it back in Partnero)",
    "EXPERIMENT_ENROLLMENT": "experiment enrollment; no payment",
}

Json = Mapping[str, Any]


class RevenueCatOptions(AdapterOptions):
    """Endpoint settings for RevenueCat."""

    # purchased_currency: `price_in_purchased_currency` + `currency`; usd: RevenueCat's USD `price`
    price: Literal["purchased_currency", "usd"] = "purchased_currency"
    # proceeds: the price less RevenueCat's estimated store commission (the tax, estimated by
    # `tax_percentage`, is the endpoint's `amount` setting's business, as for every provider)
    revenue: Literal["gross", "proceeds"] = "gross"
    # stores whose payments Partnero already receives natively (e.g. STRIPE, PADDLE): counted once
    ignore_stores: tuple[str, ...] = ()
    # the integration's webhook signing secret (two while rotating): the signature is then required too
    signing_secret: SecretStr | list[SecretStr] | None = None
    tolerance_seconds: int = Field(default=STANDARD_TOLERANCE_SECONDS, gt=0)

    def signing_keys(self) -> tuple[bytes, ...]:
        value = self.signing_secret
        secrets = [] if value is None else value if isinstance(value, list) else [value]
        return tuple(s.get_secret_value().encode("utf-8") for s in secrets if s.get_secret_value())


class RevenueCatAdapter(ProviderAdapter):
    name: ClassVar[str] = "revenuecat"
    Options: ClassVar[type[AdapterOptions]] = RevenueCatOptions
    # RevenueCat has no dispute events: store chargebacks arrive as refunds
    reports_dispute_outcome: ClassVar[bool] = False

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        self.settings = options if isinstance(options, RevenueCatOptions) else RevenueCatOptions()
        accepted: list[bytes] = []
        for secret in self.secrets:
            token = secret.removeprefix(BEARER)
            if not token:
                raise ValueError("revenuecat: empty authorization value")
            # RevenueCat sends the dashboard value verbatim, which may or may not start with "Bearer ":
            # the bridge's copy matches either way, but only exactly (case and spaces count)
            for value in (token, BEARER + token):
                encoded = value.encode("utf-8")
                if encoded not in accepted:
                    accepted.append(encoded)
        self._accepted = tuple(accepted)
        self._signing_keys = self.settings.signing_keys()
        self._ignored_stores = frozenset(store.upper() for store in self.settings.ignore_stores)

    # --- authenticity ------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float) -> None:
        sent = request.header(AUTHORIZATION_HEADER)
        if not sent:
            raise SignatureError.missing("Authorization header")
        offered = sent.encode("utf-8", "surrogatepass")
        # no early exit: every accepted value is compared so timing does not reveal which one matched
        matched = False
        for value in self._accepted:
            matched |= hmac.compare_digest(offered, value)
        if not matched:
            raise SignatureError.mismatch("Authorization header")
        if self._signing_keys:
            verify_timestamped_hmac(
                self._signing_keys,
                request.header(SIGNATURE_HEADER),
                request.body,
                now,
                self.settings.tolerance_seconds,
                SIGNATURE_HEADER,
            )

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        headers = {AUTHORIZATION_HEADER: secret, "user-agent": "RevenueCat"}
        if self._signing_keys:
            headers[SIGNATURE_HEADER] = sign_timestamped_hmac(self._signing_keys[0], int(now), body)
        return SignedRequest(headers=headers)

    def delivery_id(self, request: WebhookRequest) -> str:
        """`event.id`: RevenueCat's retries keep it (and `event_timestamp_ms`)."""
        try:
            payload = json.loads(request.body, parse_float=Decimal)
        except (ValueError, RecursionError):
            return body_hash(request.body)
        event = payload.get("event") if isinstance(payload, dict) else None
        event_id = event.get("id") if isinstance(event, dict) else None
        if isinstance(event_id, str) and event_id.strip():
            return event_id.strip()
        return body_hash(request.body)

    # --- parsing -----------------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        event = _event(request.body)
        event_type = event.get("type")
        if not isinstance(event_type, str) or not event_type:
            raise PayloadError("missing event.type")
        is_refund = event_type == "CANCELLATION" and event.get("cancel_reason") == REFUND_REASON
        if event_type not in SALE_TYPES and not is_refund:
            return [ignored(event_type, _ignored_reason(event_type, event))]
        store = event.get("store")
        if isinstance(store, str) and store.upper() in self._ignored_stores:
            return [ignored(event_type, f"store {store} is excluded by this endpoint (ignore_stores)")]
        if event.get("is_family_share") is True:
            # Apple gives each family member a transaction of their own; only the purchaser paid
            return [ignored(event_type, "shared through Family Sharing; the purchaser's own event counts the payment")]
        try:
            if is_refund:
                return [self._refund(event_type, event)]
            return [self._sale(event_type, event)]
        # ArithmeticError: decimal.Overflow from an absurd exponent is not an InvalidOperation
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{event_type}: {exc}") from None

    def _sale(self, event_type: str, event: Json) -> NormalizedEvent:
        key = _transaction_key(event)
        amount, currency = self._price(event)
        if amount < 0:
            raise ValueError("negative price on a purchase")
        if amount == 0:
            return ignored(event_type, "price is 0 (free trial or free offer)")
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event_type,
            transaction_key=key,
            amount=self._revenue(event, amount, currency),
            tax=_share(event, "tax_percentage", amount, currency),
            currency=currency,
            customer=_customer(event),
            product_id=_optional_text(event.get("product_id")),
            product_type=SALE_TYPES[event_type],
            test_mode=_test_mode(event),
            occurred_at=_timestamp(event.get("purchased_at_ms")),
            coupon_code=discount_code(event.get("offer_code")),
        )

    def _refund(self, event_type: str, event: Json) -> NormalizedEvent:
        key = _transaction_key(event)
        try:
            amount, currency = self._price(event)
        except ValueError:
            # the refunded amount is informative only: the whole transaction is reversed either way
            amount, currency = None, None
        return NormalizedEvent(
            kind=EventKind.REFUND,
            event_type=event_type,
            transaction_key=key,
            amount=abs(amount) if amount else None,
            currency=currency,
            customer=_customer(event),
            product_id=_optional_text(event.get("product_id")),
            test_mode=_test_mode(event),
            occurred_at=_timestamp(event.get("event_timestamp_ms")),
            # a store refund (Apple, Google, Amazon) returns the whole transaction
            full_refund=True,
        )

    def _price(self, event: Json) -> tuple[Decimal, str]:
        """The price and its currency; the USD `price` when the purchased currency is unknown."""
        if self.settings.price == "purchased_currency":
            amount, code = _number(event.get("price_in_purchased_currency")), event.get("currency")
            if amount is not None and isinstance(code, str) and code:
                currency = normalize_currency(code)
                return from_major_units(amount, currency), currency
        usd = _number(event.get("price"))
        if usd is not None:
            return from_major_units(usd, "USD"), "USD"
        raise ValueError("price unknown (price and price_in_purchased_currency are null)")

    def _revenue(self, event: Json, amount: Decimal, currency: str) -> Decimal:
        deducted = sum((_fraction(event.get(f)) for f in ("tax_percentage", "commission_percentage")), Decimal(0))
        if not 0 <= deducted <= 1:
            raise ValueError(f"tax and commission percentages add up to {deducted}")
        if self.settings.revenue == "gross":
            return amount
        # RevenueCat leaves a percentage null when it does not know it; nothing is deducted for it then
        commission = _share(event, "commission_percentage", amount, currency) or Decimal(0)
        return amount - commission


def _share(event: Json, field: str, amount: Decimal, currency: str) -> Decimal | None:
    """`amount` times the estimated percentage in `field` (a fraction, e.g. 0.1667), None when RevenueCat
    does not know it."""
    if event.get(field) is None:
        return None
    return from_major_units(amount * _fraction(event[field]), currency)


def _event(body: bytes) -> Json:
    try:
        payload = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise PayloadError("body is not JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError("body is not a JSON object")
    event = payload.get("event")
    if not isinstance(event, dict):
        raise PayloadError("missing event object")
    return event


def _ignored_reason(event_type: str, event: Json) -> str:
    if event_type == "CANCELLATION":
        reason = event.get("cancel_reason")
        return f"cancellation ({reason}): the subscription stops renewing, nothing is refunded"
    return _IGNORED.get(event_type, "event type not used by the bridge")


def _transaction_key(event: Json) -> str:
    store = event.get("store")
    transaction_id = event.get("transaction_id")
    if not isinstance(store, str) or not store.strip():
        raise ValueError("missing store")
    if isinstance(transaction_id, bool) or not isinstance(transaction_id, str | int) or not str(transaction_id).strip():
        raise ValueError("missing transaction_id")
    return f"revenuecat:{store.strip()}:{str(transaction_id).strip()}"


def _customer(event: Json) -> CustomerFacts:
    attributes = _attributes(event.get("subscriber_attributes"))
    return CustomerFacts(
        email=attributes.get("$email"),
        customer_id=_optional_text(event.get("original_app_user_id")),
        external_id=_app_user_id(event),
        name=attributes.get("$displayName"),
        metadata=attributes,
    )


def _app_user_id(event: Json) -> str | None:
    """The app's own user id: `app_user_id`, else one found among the ids RevenueCat has seen.

    An anonymous id (`$RCAnonymousID:…`) is RevenueCat's, never the merchant's key.
    """
    aliases = event.get("aliases")
    candidates = [event.get("app_user_id"), event.get("original_app_user_id")]
    if isinstance(aliases, list):
        candidates.extend(aliases)
    for candidate in candidates:
        value = _optional_text(candidate)
        if value and not value.startswith(ANONYMOUS_PREFIX):
            return value
    return None


def _attributes(value: Any) -> dict[str, str]:
    """`subscriber_attributes` as `{name: value}`; each attribute is `{"value": …, "updated_at_ms": …}`."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, str] = {}
    for name, attribute in value.items():
        inner = attribute.get("value") if isinstance(attribute, Mapping) else None
        if isinstance(inner, bool):
            out[str(name)] = "true" if inner else "false"
        elif isinstance(inner, str | int | Decimal) and str(inner) != "":
            out[str(name)] = str(inner)
    return out


def _test_mode(event: Json) -> bool:
    return event.get("environment") in _TEST_ENVIRONMENTS or event.get("store") in _TEST_STORES


def _number(value: Any) -> Decimal | None:
    """A JSON number (parsed with `parse_float=Decimal`) as a Decimal; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    return Decimal(value)


def _fraction(value: Any) -> Decimal:
    if value is None:
        return Decimal(0)
    number = _number(value)
    if number is None:
        raise ValueError(f"percentage is not a number ({describe(value)})")
    return number


def _timestamp(value: Any) -> datetime | None:
    millis = _number(value)
    # bounded before int(): an exponent like 1e999999999 would otherwise build a gigantic integer
    if millis is None or not 0 <= millis < 10**16:
        return None
    try:
        return datetime.fromtimestamp(int(millis) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError, ArithmeticError):
        return None


def _optional_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None
