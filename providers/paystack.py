"""Paystack: `x-paystack-signature` hex HMAC-SHA512 of the raw body, keyed with the secret API key.

Every successful charge, one-off or subscription, arrives as `charge.success` and is keyed on its
reference: `paystack:ref:<data.reference>`. The invoice and subscription events that announce a
subscription charge again are ignored, so a payment is counted once. Refunds name the charge by
`transaction_reference`, disputes by `transaction.reference`, so they share its key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_minor_units
from bridge.redact import describe
from providers._payload import currency_code, load_json_object
from providers.base import (
    AdapterOptions,
    PayloadError,
    ProviderAdapter,
    SignedRequest,
    WebhookRequest,
    body_hash,
)
from providers.signatures import sign_hmac, verify_hmac

SIGNATURE_HEADER = "x-paystack-signature"

_IGNORED = {
    "invoice.create": "subscription invoice; its payment is booked from charge.success",
    "invoice.update": "subscription invoice; its payment is booked from charge.success",
    "invoice.payment_failed": "no money moved",
    "subscription.create": "subscription start; each charge is booked from charge.success",
    "subscription.not_renew": "no money moved",
    "subscription.disable": "no money moved",
    "subscription.expiring_cards": "no money moved",
    "refund.pending": "refund not processed yet; refund.processed follows",
    "refund.processing": "refund not processed yet; refund.processed follows",
    "refund.failed": "refund did not go through",
    "charge.dispute.remind": "reminder of a dispute already announced by charge.dispute.create",
    "paymentrequest.pending": "payment request not paid yet",
    "paymentrequest.success": "payment requests are not booked; only charge.success is",
    "transfer.success": "a payout, not a sale",
    "transfer.failed": "a payout, not a sale",
    "transfer.reversed": "a payout, not a sale",
}

# `merchant-accepted` and `declined` are what the Resolve Dispute API accepts; `auto-accepted` is
# what the official resolve sample shows when the merchant did not answer in time
_LOST_RESOLUTIONS = frozenset({"merchant-accepted", "auto-accepted"})
_WON_RESOLUTIONS = frozenset({"declined"})

Json = Mapping[str, Any]
Handler = Callable[[str, Json], NormalizedEvent]


class PaystackAdapter(ProviderAdapter):
    name: ClassVar[str] = "paystack"
    Options: ClassVar[type[AdapterOptions]] = AdapterOptions
    # charge.dispute.resolve tells whether the merchant lost or won
    reports_dispute_outcome: ClassVar[bool] = True

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        if any(not secret for secret in self.secrets):
            raise ValueError("paystack: empty secret key")
        # the secret API key (sk_live_… / sk_test_…) is the HMAC key, used as UTF-8 bytes
        self._keys = tuple(secret.encode("utf-8") for secret in self.secrets)
        self._handlers: dict[str, Handler] = {
            "charge.success": _charge_success,
            "refund.processed": _refund_processed,
            "charge.dispute.create": _dispute_created,
            "charge.dispute.resolve": _dispute_resolved,
        }

    # --- signature ---------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float) -> None:
        # no timestamp in the scheme, so there is no replay window to check
        verify_hmac(
            self._keys,
            request.body,
            request.header(SIGNATURE_HEADER),
            algorithm="sha512",
            encoding="hex",
            header=SIGNATURE_HEADER,
        )

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        return SignedRequest(headers={SIGNATURE_HEADER: sign_hmac(secret.encode("utf-8"), body, "sha512", "hex")})

    # --- delivery id -------------------------------------------------------------------------------

    def delivery_id(self, request: WebhookRequest) -> str:
        """`<event>:<domain>:<id>` (charge or dispute id, refund reference), else a body hash.

        Paystack sends no delivery id. The domain keeps a test and a live object with the same id apart
        when one endpoint holds both keys.
        """
        try:
            payload = load_json_object(request.body)
            event, data = payload.get("event"), payload.get("data")
            if not isinstance(event, str) or not event or not isinstance(data, dict):
                return body_hash(request.body)
            if event.startswith("refund."):
                object_id = _text(data.get("refund_reference"))
            elif event == "charge.success" or event.startswith("charge.dispute."):
                object_id = _text(data.get("id"))
            else:
                object_id = None
            if object_id is None:
                return body_hash(request.body)
            domain = _text(data.get("domain")) or "-"
            return f"{event}:{domain}:{object_id}"
        except (PayloadError, ValueError, TypeError, RecursionError):
            return body_hash(request.body)

    # --- parse -------------------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        payload = load_json_object(request.body)
        event = payload.get("event")
        if not isinstance(event, str) or not event:
            raise PayloadError("missing event")
        handler = self._handlers.get(event)
        if handler is None:
            return [ignored(event, _IGNORED.get(event, "event not used by the bridge"))]
        data = payload.get("data")
        if not isinstance(data, dict):
            raise PayloadError(f"{event}: missing data object")
        try:
            return [handler(event, data)]
        except PayloadError as exc:
            raise PayloadError(f"{event}: {exc}") from None
        # ArithmeticError: decimal.Overflow from an absurd exponent is not an InvalidOperation
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{event}: {exc}") from None


def _charge_success(event: str, data: Json) -> NormalizedEvent:
    status = data.get("status")
    if status is not None and status != "success":
        return ignored(event, f"charge status is {status!r}, not success")
    reference = _required(data, "reference")
    currency = currency_code(data.get("currency"), "data.currency")
    amount = from_minor_units(_subunits(data.get("amount"), "data.amount"), currency)
    if amount == 0:
        return ignored(event, "nothing was paid")
    plan_code = _plan_code(data.get("plan"))
    return NormalizedEvent(
        kind=EventKind.SALE,
        event_type=event,
        transaction_key=f"paystack:ref:{reference}",
        amount=amount,
        currency=currency,
        customer=_customer(data.get("customer"), data.get("metadata")),
        product_id=plan_code,
        product_type="subscription" if plan_code else "one_time",
        test_mode=_test_mode(data),
        occurred_at=_timestamp(data.get("paid_at") or data.get("paidAt") or data.get("created_at")),
    )


def _refund_processed(event: str, data: Json) -> NormalizedEvent:
    transaction = _mapping(data.get("transaction"))
    reference = _text(data.get("transaction_reference")) or _text(transaction.get("reference"))
    if reference is None:
        raise PayloadError("missing data.transaction_reference")
    currency = currency_code(data.get("currency"), "data.currency")
    # a string ("5000") in some official samples, a number (20000) in others
    amount = from_minor_units(_subunits(data.get("amount"), "data.amount"), currency)
    return NormalizedEvent(
        kind=EventKind.REFUND,
        event_type=event,
        transaction_key=f"paystack:ref:{reference}",
        amount=amount,
        currency=currency,
        customer=_customer(data.get("customer"), None),
        test_mode=_test_mode(data),
        refund_id=_text(data.get("refund_reference")) or _text(data.get("id")),
    )


def _dispute_created(event: str, data: Json) -> NormalizedEvent:
    return _dispute(event, data, DisputeState.OPENED)


def _dispute_resolved(event: str, data: Json) -> NormalizedEvent:
    resolution = _text(data.get("resolution"))
    if resolution in _LOST_RESOLUTIONS:
        return _dispute(event, data, DisputeState.LOST)
    if resolution in _WON_RESOLUTIONS:
        return _dispute(event, data, DisputeState.WON)
    # an undocumented resolution: the charge's own status still says whether the money went back
    if _mapping(data.get("transaction")).get("status") == "reversed":
        return _dispute(event, data, DisputeState.LOST)
    return ignored(event, f"dispute resolution {resolution!r} not understood; the sale stands")


def _dispute(event: str, data: Json, state: DisputeState) -> NormalizedEvent:
    transaction = _mapping(data.get("transaction"))
    # in the dispute samples `transaction_reference` is null and the charge is in `transaction`
    reference = _text(transaction.get("reference")) or _text(data.get("transaction_reference"))
    if reference is None:
        raise PayloadError("missing data.transaction.reference")
    currency = currency_code(data.get("currency") or transaction.get("currency"), "data.currency")
    amount = None
    if data.get("refund_amount") is not None:
        amount = from_minor_units(_subunits(data["refund_amount"], "data.refund_amount"), currency)
    sale_amount = None
    if transaction.get("amount") is not None and transaction.get("currency") in (None, currency):
        sale_amount = from_minor_units(_subunits(transaction["amount"], "data.transaction.amount"), currency)
    resolution = _text(data.get("resolution"))
    return NormalizedEvent(
        kind=EventKind.DISPUTE,
        event_type=event,
        transaction_key=f"paystack:ref:{reference}",
        amount=amount,
        currency=currency,
        customer=_customer(data.get("customer"), transaction.get("metadata")),
        test_mode=_test_mode(data, transaction),
        occurred_at=_timestamp(data.get("resolvedAt") or data.get("created_at")),
        sale_amount=sale_amount,
        dispute_state=state,
        reason=f"resolution: {resolution}" if resolution else _text(data.get("category")),
    )


# --- payload helpers --------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    # ids are large integers in Paystack payloads: kept exact as strings, never through float
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


def _required(data: Json, field: str) -> str:
    value = _text(data.get(field))
    if value is None:
        raise PayloadError(f"missing data.{field}")
    return value


def _mapping(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _subunits(value: Any, field: str) -> int | str | Decimal:
    """A whole, non-negative number of kobo/pesewas/cents, as a number or a digit string."""
    if isinstance(value, str):
        digits = value.strip()
        # ASCII only: Decimal would also read other scripts' digits
        if digits.isascii() and digits.isdigit():
            return digits
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"{field} is not an amount in subunits ({describe(value)})")
    if value < 0:
        raise ValueError(f"{field} is negative")
    return value


def _plan_code(plan: Any) -> str | None:
    # `{}` on one-off charges, the plan object on subscription charges
    if isinstance(plan, dict):
        return _text(plan.get("plan_code"))
    return _text(plan)


def _test_mode(*sources: Json) -> bool:
    return any(source.get("domain") == "test" for source in sources)


def _customer(customer: Any, metadata: Any) -> CustomerFacts:
    details = _mapping(customer)
    names = [n for n in (_text(details.get("first_name")), _text(details.get("last_name"))) if n]
    return CustomerFacts(
        email=_text(details.get("email")),
        customer_id=_text(details.get("customer_code")) or _text(details.get("id")),
        name=" ".join(names) or None,
        metadata=_metadata(metadata),
    )


def _metadata(value: Any) -> dict[str, str]:
    """The transaction's `metadata` flattened: its scalar keys, then each `custom_fields[]` entry by
    its `variable_name` (a key set directly wins). Official samples also show `0` and `""` here."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        # metadata passed as a JSON string at initialize comes back as that string
        try:
            value = load_json_object(value.encode())
        except (PayloadError, UnicodeEncodeError):
            return {}
    if not isinstance(value, dict):
        return {}
    flat: dict[str, str] = {}
    for name, item in value.items():
        scalar = _scalar(item)
        if scalar is not None:
            flat[str(name)] = scalar
    fields = value.get("custom_fields")
    for entry in fields if isinstance(fields, list) else []:
        if not isinstance(entry, dict):
            continue
        name, scalar = entry.get("variable_name"), _scalar(entry.get("value"))
        if isinstance(name, str) and name and scalar is not None:
            flat.setdefault(name, scalar)
    return flat


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | Decimal):
        return str(value)
    return None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
