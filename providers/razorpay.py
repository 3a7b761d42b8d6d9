"""Razorpay: hex HMAC-SHA256 of the raw body in `X-Razorpay-Signature`; sales keyed on the payment id.

One captured payment can be announced three times: `payment.captured` (the payment alone), `order.paid`
(order + payment) and `subscription.charged` (subscription + payment), and Payment Links, invoices and
QR codes add their own `*.paid` / `*.credited` events. Every one of them carries the payment entity, so
they all resolve to `razorpay:pay:<payment id>` and the payment becomes one Partnero sale. Refunds and
disputes name the payment, so they share its key. Amounts are integer minor units (paise for INR).
Test and live mode have separate webhooks and secrets and nothing in the payload tells them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_minor_units
from providers._payload import currency_code, flat_metadata, load_json_object, non_negative_amount, scalar_text
from providers.base import (
    AdapterOptions,
    PayloadError,
    ProviderAdapter,
    SignedRequest,
    WebhookRequest,
    body_hash,
)
from providers.signatures import sign_hmac, verify_hmac

SIGNATURE_HEADER = "x-razorpay-signature"
EVENT_ID_HEADER = "x-razorpay-event-id"
KEY_PREFIX = "razorpay:pay:"

# Each of these carries `payload.payment.entity` of a captured payment: one key, one sale.
_SALE_EVENTS = frozenset(
    {"payment.captured", "order.paid", "subscription.charged", "payment_link.paid", "invoice.paid", "qr_code.credited"}
)
_REFUND_EVENTS = frozenset({"refund.processed", "refund.created"})
_DISPUTE_STATES = {
    "payment.dispute.created": DisputeState.OPENED,
    "payment.dispute.won": DisputeState.WON,
    "payment.dispute.lost": DisputeState.LOST,
}

_IGNORED = {
    "payment.authorized": "not captured yet; the sale is taken from payment.captured / order.paid",
    "payment.failed": "payment did not succeed",
    "refund.failed": "refund did not go through",
    "refund.speed_changed": "refund speed changed; the refund itself arrives as refund.processed",
    "payment.dispute.closed": "dispute closed without a won/lost outcome; the sale stands",
    "payment.dispute.under_review": "dispute not settled yet",
    "payment.dispute.action_required": "dispute not settled yet",
    "payment_link.partially_paid": "each part payment arrives as its own payment.captured",
    "invoice.partially_paid": "each part payment arrives as its own payment.captured",
}
_IGNORED_PREFIXES = {
    "subscription.": "subscription lifecycle; charges arrive as subscription.charged",
    "payment.downtime.": "payment-method downtime notice, not a payment",
    "payout": "payout (RazorpayX), not a sale",
    "fund_account.": "RazorpayX account validation, not a sale",
    "transfer.": "Route transfer, not a sale",
    "settlement.": "settlement to the merchant, not a sale",
    "virtual_account.": "Smart Collect account change; the payment arrives as payment.captured",
}


class RazorpayOptions(AdapterOptions):
    """Endpoint settings for Razorpay."""

    # Razorpay payloads carry no test flag; an endpoint fed by a Test-mode webhook says so here
    sandbox: bool = False


class RazorpayAdapter(ProviderAdapter):
    name: ClassVar[str] = "razorpay"
    Options: ClassVar[type[AdapterOptions]] = RazorpayOptions
    reports_dispute_outcome: ClassVar[bool] = True

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        self.settings = options if isinstance(options, RazorpayOptions) else RazorpayOptions()
        # the dashboard webhook secret is used as typed (not the API key secret, not decoded)
        self._keys = tuple(secret.encode("utf-8") for secret in self.secrets)

    def verify(self, request: WebhookRequest, now: float) -> None:
        # no timestamp in the scheme: replays are caught by the event-id dedup, not here
        verify_hmac(self._keys, request.body, request.header(SIGNATURE_HEADER), header=SIGNATURE_HEADER)

    def delivery_id(self, request: WebhookRequest) -> str:
        # the same event keeps its x-razorpay-event-id across Razorpay's retries
        event_id = (request.header(EVENT_ID_HEADER) or "").strip()
        return event_id or body_hash(request.body)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        headers = {SIGNATURE_HEADER: sign_hmac(secret.encode("utf-8"), body)}
        # a stable id per body: a re-sent fixture is a retry of one event, as at Razorpay
        headers[EVENT_ID_HEADER] = "evt_" + body_hash(body).removeprefix("sha256:")[:14]
        return SignedRequest(headers=headers)

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        envelope = load_json_object(request.body)
        event_type = envelope.get("event")
        if not isinstance(event_type, str) or not event_type:
            raise PayloadError("missing event")
        acted_on = event_type in _SALE_EVENTS or event_type in _REFUND_EVENTS or event_type in _DISPUTE_STATES
        if not acted_on:
            return [ignored(event_type, _ignored_reason(event_type))]
        payload = envelope.get("payload")
        if not isinstance(payload, dict):
            raise PayloadError(f"{event_type}: missing payload object")
        occurred_at = _timestamp(envelope.get("created_at"))
        try:
            if event_type in _SALE_EVENTS:
                return [self._sale(event_type, payload, occurred_at)]
            if event_type in _REFUND_EVENTS:
                return [self._refund(event_type, payload, occurred_at)]
            return [self._dispute(event_type, payload, occurred_at, _DISPUTE_STATES[event_type])]
        # ArithmeticError: decimal.Overflow from an absurd exponent is not an InvalidOperation
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{event_type}: {exc}") from None

    def _sale(self, event_type: str, payload: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
        payment = _entity(payload, "payment", required=True)
        currency = currency_code(payment.get("currency"), "payment.currency")
        subscription = _entity(payload, "subscription")
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event_type,
            transaction_key=KEY_PREFIX + _required_text(payment, "id", "payment.id"),
            amount=from_minor_units(non_negative_amount(payment.get("amount"), "payment.amount"), currency),
            currency=currency,
            customer=_customer(payment, payload),
            product_id=scalar_text(subscription.get("plan_id")),
            product_type="subscription" if subscription else None,
            test_mode=self.settings.sandbox,
            occurred_at=occurred_at,
        )

    def _refund(self, event_type: str, payload: Mapping[str, Any], occurred_at: datetime | None) -> NormalizedEvent:
        refund = _entity(payload, "refund", required=True)
        status = refund.get("status")
        # refund.created usually announces a pending refund that may still fail; an instant refund
        # can be created already processed, and then it is as good as refund.processed
        if event_type == "refund.created" and status != "processed":
            return ignored(event_type, f"refund status is {status!r}; the refund is booked from refund.processed")
        payment = _entity(payload, "payment")
        payment_id = scalar_text(refund.get("payment_id")) or scalar_text(payment.get("id"))
        if payment_id is None:
            raise PayloadError(f"{event_type}: missing refund.payment_id")
        currency = currency_code(refund.get("currency"), "refund.currency")
        sale_amount: Decimal | None = None
        refunded_total: Decimal | None = None
        full_refund: bool | None = None
        if payment:
            # the payment snapshot holds the sale total and the refunded total after this refund
            payment_currency = currency_code(payment.get("currency"), "payment.currency")
            if payment.get("amount") is not None:
                sale_amount = from_minor_units(
                    non_negative_amount(payment["amount"], "payment.amount"), payment_currency
                )
            if payment.get("amount_refunded") is not None:
                refunded_total = from_minor_units(
                    non_negative_amount(payment["amount_refunded"], "payment.amount_refunded"), payment_currency
                )
            if payment.get("refund_status") in ("full", "partial"):
                full_refund = payment["refund_status"] == "full"
        return NormalizedEvent(
            kind=EventKind.REFUND,
            event_type=event_type,
            transaction_key=KEY_PREFIX + payment_id,
            amount=from_minor_units(non_negative_amount(refund.get("amount"), "refund.amount"), currency),
            currency=currency,
            customer=_customer(payment, payload) if payment else CustomerFacts(),
            test_mode=self.settings.sandbox,
            occurred_at=occurred_at,
            full_refund=full_refund,
            refunded_total=refunded_total,
            sale_amount=sale_amount,
            refund_id=scalar_text(refund.get("id")),
        )

    def _dispute(
        self, event_type: str, payload: Mapping[str, Any], occurred_at: datetime | None, state: DisputeState
    ) -> NormalizedEvent:
        dispute = _entity(payload, "dispute", required=True)
        payment = _entity(payload, "payment")
        payment_id = scalar_text(dispute.get("payment_id")) or scalar_text(payment.get("id"))
        if payment_id is None:
            raise PayloadError(f"{event_type}: missing dispute.payment_id")
        amount: Decimal | None = None
        currency: str | None = None
        if dispute.get("currency") is not None:
            currency = currency_code(dispute["currency"], "dispute.currency")
            if dispute.get("amount") is not None:
                amount = from_minor_units(non_negative_amount(dispute["amount"], "dispute.amount"), currency)
        phase = scalar_text(dispute.get("phase"))
        return NormalizedEvent(
            kind=EventKind.DISPUTE,
            event_type=event_type,
            transaction_key=KEY_PREFIX + payment_id,
            amount=amount,
            currency=currency,
            customer=_customer(payment, payload) if payment else CustomerFacts(),
            test_mode=self.settings.sandbox,
            occurred_at=occurred_at,
            dispute_state=state,
            reason=f"dispute phase {phase}" if phase else None,
        )


def _entity(payload: Mapping[str, Any], name: str, *, required: bool = False) -> dict[str, Any]:
    """`payload.<name>.entity`, or {} when absent (PayloadError when the event needs it)."""
    wrapper = payload.get(name)
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    if isinstance(entity, dict):
        return entity
    if required:
        raise PayloadError(f"missing payload.{name}.entity")
    return {}


def _customer(payment: Mapping[str, Any], payload: Mapping[str, Any]) -> CustomerFacts:
    subscription = _entity(payload, "subscription")
    # Notes set on the order or subscription are not always copied to the payment; the payment's
    # own notes win where both have a key.
    metadata: dict[str, str] = {}
    for source in (subscription, _entity(payload, "order"), payment):
        metadata.update(flat_metadata(source.get("notes")))
    return CustomerFacts(
        email=scalar_text(payment.get("email")),
        customer_id=scalar_text(payment.get("customer_id")) or scalar_text(subscription.get("customer_id")),
        metadata=metadata,
    )


def _required_text(entity: Mapping[str, Any], key: str, label: str) -> str:
    value = scalar_text(entity.get(key))
    if value is None:
        raise PayloadError(f"missing {label}")
    return value


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _ignored_reason(event_type: str) -> str:
    if event_type in _IGNORED:
        return _IGNORED[event_type]
    for prefix, reason in _IGNORED_PREFIXES.items():
        if event_type.startswith(prefix):
            return reason
    return "event not used by the bridge"
