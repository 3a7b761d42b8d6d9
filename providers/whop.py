"""Whop: Standard Webhooks with the raw secret as key (or the legacy `x-whop-signature`); `payment.succeeded` sales.

Current ("v1") webhooks are Standard Webhooks, but the HMAC key is the UTF-8 bytes of the dashboard
secret: Whop's SDK base64-encodes the secret before handing it to a Standard Webhooks library, which
decodes it straight back. Legacy (v2/v5) webhooks sign `"<t>.<raw body>"` into
`x-whop-signature: t=<unix seconds>,v1=<hex>` with the same key; `scheme` picks which one an endpoint
accepts.

Every charge, one-off, first or renewal, is its own payment with its own `payment.succeeded`, keyed
`whop:pay:<payment id>`; `invoice.paid` and the membership events announce the same money again and
are ignored. Refunds and disputes name the payment, so they share its key. Amounts are JSON numbers in
major units: the body is parsed with `parse_float=Decimal`, never through float.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_major_units
from providers._payload import (
    currency_code,
    discount_code,
    flat_metadata,
    load_json_object,
    non_negative_amount,
    scalar_text,
)
from providers.base import (
    AdapterOptions,
    PayloadError,
    ProviderAdapter,
    SignatureError,
    SignedRequest,
    WebhookRequest,
    body_hash,
)
from providers.signatures import (
    STANDARD_TOLERANCE_SECONDS,
    sign_timestamped_hmac,
    standard_webhook_headers,
    standard_webhook_key,
    verify_standard_webhook,
    verify_timestamped_hmac,
)

KEY_PREFIX = "whop:pay:"
LEGACY_HEADER = "x-whop-signature"

_REFUND_EVENTS = frozenset({"refund.created", "refund.updated"})
_DISPUTE_EVENTS = frozenset({"dispute.created", "dispute.updated"})
# Stripe-like statuses; the `warning_*` ones are inquiries and early warnings, not chargebacks yet
_DISPUTE_STATES = {
    "needs_response": DisputeState.OPENED,
    "under_review": DisputeState.OPENED,
    "won": DisputeState.WON,
    "lost": DisputeState.LOST,
}

_IGNORED = {
    "payment.created": "payment not settled yet; the sale is taken from payment.succeeded",
    "payment.pending": "payment not settled yet; the sale is taken from payment.succeeded",
    "payment.failed": "payment did not succeed",
    "invoice.paid": "the money is booked from the invoice's payment.succeeded",
    "dispute_alert.created": "early warning, not a chargeback; an automatic refund arrives as refund.*",
}
_IGNORED_PREFIXES = {
    "membership.": "membership lifecycle; payments arrive as payment.succeeded",
    "invoice.": "invoice lifecycle; payments arrive as payment.succeeded",
    "resolution_center_case.": "Whop resolution case; a resulting refund arrives as refund.*",
    "app_": "app install event, not a sale of the company",
}

Scheme = Literal["standard", "legacy", "auto"]


class WhopOptions(AdapterOptions):
    """Endpoint settings for Whop."""

    # standard: v1 webhooks (webhook-* headers); legacy: v2/v5 `x-whop-signature`; auto: either
    scheme: Scheme = "standard"
    tolerance_seconds: int = Field(default=STANDARD_TOLERANCE_SECONDS, gt=0)
    # Whop payloads carry no test flag; an endpoint fed by Whop's sandbox says so here
    sandbox: bool = False


class WhopAdapter(ProviderAdapter):
    name: ClassVar[str] = "whop"
    Options: ClassVar[type[AdapterOptions]] = WhopOptions
    reports_dispute_outcome: ClassVar[bool] = True

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        self.settings = options if isinstance(options, WhopOptions) else WhopOptions()
        # both schemes use the secret's UTF-8 bytes, prefix included, never decoded
        self._keys = tuple(standard_webhook_key(secret, "raw") for secret in self.secrets)

    # --- authenticity --------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float) -> None:
        scheme = self.settings.scheme
        has_standard = bool(request.header("webhook-signature") or request.header("svix-signature"))
        has_legacy = bool(request.header(LEGACY_HEADER))
        if scheme == "legacy" or (scheme == "auto" and has_legacy and not has_standard):
            self._verify_legacy(request, now)
            return
        try:
            verify_standard_webhook(self._keys, request.headers, request.body, now, self.settings.tolerance_seconds)
        except SignatureError:
            # an auto endpoint may be sent both header sets; either one genuine is enough
            if scheme == "auto" and has_legacy:
                self._verify_legacy(request, now)
                return
            raise

    def _verify_legacy(self, request: WebhookRequest, now: float) -> None:
        verify_timestamped_hmac(
            self._keys, request.header(LEGACY_HEADER), request.body, now, self.settings.tolerance_seconds, LEGACY_HEADER
        )

    def delivery_id(self, request: WebhookRequest) -> str:
        # Standard Webhooks keeps `webhook-id` (= the envelope `id`) across retries of one message
        header = request.header("webhook-id") or request.header("svix-id")
        if header:
            return header
        try:
            envelope = json.loads(request.body, parse_float=Decimal)
        except (ValueError, RecursionError):
            return body_hash(request.body)
        msg_id = envelope.get("id") if isinstance(envelope, dict) else None
        if isinstance(msg_id, str) and msg_id.startswith("msg_"):
            return msg_id
        return body_hash(request.body)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        key = standard_webhook_key(secret, "raw")
        timestamp = int(now)
        if self.settings.scheme == "legacy":
            return SignedRequest(headers={LEGACY_HEADER: sign_timestamped_hmac(key, timestamp, body)})
        # one body is one Whop message, so its id stays the same however often it is re-sent
        msg_id = "msg_" + hashlib.sha256(body).hexdigest()[:24]
        return SignedRequest(headers=standard_webhook_headers(key, msg_id, timestamp, body))

    # --- parsing -------------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        envelope = load_json_object(request.body)
        # v1 names the event `type`; legacy v2/v5 bodies name it `action`
        event_type = envelope.get("type") or envelope.get("action")
        if not isinstance(event_type, str) or not event_type:
            raise PayloadError("missing event type")
        acted_on = event_type == "payment.succeeded" or event_type in _REFUND_EVENTS or event_type in _DISPUTE_EVENTS
        if not acted_on:
            return [ignored(event_type, _ignored_reason(event_type))]
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise PayloadError(f"{event_type}: missing data object")
        occurred_at = _timestamp(envelope.get("timestamp"))
        try:
            if event_type == "payment.succeeded":
                return [self._sale(event_type, data, occurred_at)]
            if event_type in _REFUND_EVENTS:
                return [self._refund(event_type, data, occurred_at)]
            return [self._dispute(event_type, data, occurred_at)]
        # ArithmeticError: decimal.Overflow from an absurd exponent is not an InvalidOperation
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{event_type}: {exc}") from None

    def _sale(self, event_type: str, data: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
        payment_id = _required_id(data, "id", "data.id")
        currency = currency_code(data.get("currency"), "data.currency")
        # v1 `total`; legacy payloads only have `final_amount`
        total = data.get("total") if data.get("total") is not None else data.get("final_amount")
        amount = from_major_units(non_negative_amount(total, "data.total"), currency)
        if amount == 0:
            # free plans, 100 % promo codes and trial starts succeed at 0; a sale of nothing earns nothing
            return ignored(event_type, "payment total is 0 (free plan, full discount or trial start)")
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event_type,
            transaction_key=KEY_PREFIX + payment_id,
            amount=amount,
            tax=_tax(data, currency),
            currency=currency,
            customer=_customer(data),
            product_id=_id_of(data.get("product")) or scalar_text(data.get("product_id")),
            product_type=_id_of(data.get("plan")) or scalar_text(data.get("plan_id")),
            test_mode=self.settings.sandbox,
            occurred_at=occurred_at,
            coupon_code=discount_code(data.get("promo_code")),
        )

    def _refund(self, event_type: str, data: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
        status = data.get("status")
        if status != "succeeded":
            return ignored(event_type, f"refund status is {status!r}; only a succeeded refund moves money")
        payment = _object(data.get("payment"))
        payment_id = _id_of(payment) or scalar_text(data.get("payment_id"))
        if payment_id is None:
            raise PayloadError(f"{event_type}: missing data.payment.id")
        currency = currency_code(data.get("currency"), "data.currency")
        sale_amount: Decimal | None = None
        sale_tax: Decimal | None = None
        if payment.get("total") is not None and payment.get("currency") is not None:
            sale_currency = currency_code(payment["currency"], "data.payment.currency")
            sale_amount = from_major_units(non_negative_amount(payment["total"], "data.payment.total"), sale_currency)
            # a refund is reported gross: the ledger takes off the payment's own tax share
            sale_tax = _tax(payment, sale_currency)
        return NormalizedEvent(
            kind=EventKind.REFUND,
            event_type=event_type,
            transaction_key=KEY_PREFIX + payment_id,
            amount=from_major_units(non_negative_amount(data.get("amount"), "data.amount"), currency),
            currency=currency,
            customer=_customer(payment),
            test_mode=self.settings.sandbox,
            occurred_at=occurred_at,
            sale_amount=sale_amount,
            sale_tax=sale_tax,
            refund_id=_required_id(data, "id", "data.id"),
        )

    def _dispute(self, event_type: str, data: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
        status = data.get("status")
        state = _DISPUTE_STATES.get(status) if isinstance(status, str) else None
        if state is None:
            return ignored(event_type, f"dispute status is {status!r}; only chargebacks and their outcome are used")
        payment = _object(data.get("payment"))
        payment_id = _id_of(payment) or scalar_text(data.get("payment_id"))
        if payment_id is None:
            raise PayloadError(f"{event_type}: missing data.payment.id")
        amount: Decimal | None = None
        currency: str | None = None
        if data.get("currency") is not None:
            currency = currency_code(data["currency"], "data.currency")
            if data.get("amount") is not None:
                amount = from_major_units(non_negative_amount(data["amount"], "data.amount"), currency)
        return NormalizedEvent(
            kind=EventKind.DISPUTE,
            event_type=event_type,
            transaction_key=KEY_PREFIX + payment_id,
            amount=amount,
            currency=currency,
            customer=_customer(payment),
            test_mode=self.settings.sandbox,
            occurred_at=occurred_at,
            dispute_state=state,
            reason="resolved by Visa RDR" if data.get("visa_rdr") is True else None,
        )


def _tax(payment: Mapping[str, Any], currency: str) -> Decimal | None:
    """`tax_amount`, "the calculated amount of the sales/VAT tax", read as the tax inside `total`."""
    if payment.get("tax_amount") is None:
        return None
    return from_major_units(non_negative_amount(payment["tax_amount"], "tax_amount"), currency)


def _customer(payment: Mapping[str, Any]) -> CustomerFacts:
    user = payment.get("user")
    if not isinstance(user, dict):
        user = {}
    return CustomerFacts(
        # null unless the app or API key has the member:email:read permission
        email=scalar_text(user.get("email")),
        customer_id=scalar_text(user.get("id")) or scalar_text(payment.get("user_id")),
        name=scalar_text(user.get("name")),
        metadata=flat_metadata(payment.get("metadata")),
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id_of(value: Any) -> str | None:
    return scalar_text(value.get("id")) if isinstance(value, dict) else None


def _required_id(data: Mapping[str, Any], key: str, label: str) -> str:
    value = scalar_text(data.get(key))
    if value is None:
        raise PayloadError(f"missing {label}")
    return value


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _ignored_reason(event_type: str) -> str:
    if event_type in _IGNORED:
        return _IGNORED[event_type]
    for prefix, reason in _IGNORED_PREFIXES.items():
        if event_type.startswith(prefix):
            return reason
    return "event not used by the bridge"
