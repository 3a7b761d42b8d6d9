"""FastSpring: `X-FS-Signature` base64 HMAC-SHA256 of the raw body; several events in one POST.

Keys: `fastspring:order:<order id>` for every paid order. `order.completed` announces a first purchase
(a subscription's first charge included) and `subscription.charge.completed` each rebill, which is its
own order; the two never announce the same order, and if they did they would share the key. Returns
and chargebacks name the original order, so they share its key. Amounts are JSON numbers in major units:
an order's `total` is what the buyer paid, of which `tax` is tax; a return's `totalReturn` likewise with
its own `tax`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_major_units
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

SIGNATURE_HEADER = "x-fs-signature"

_IGNORED = {
    "subscription.activated": "subscription start; its first charge is booked from order.completed",
    "subscription.charge.failed": "no money moved",
    "subscription.canceled": "no money moved (the subscription ends at the period's end)",
    "subscription.deactivated": "no money moved",
    "subscription.uncanceled": "no money moved",
    "subscription.updated": "subscription change; charges arrive as subscription.charge.completed",
    "subscription.payment.overdue": "no money moved",
    "subscription.payment.reminder": "no money moved",
    "subscription.trial.reminder": "no money moved",
    "order.failed": "order did not complete",
    "order.canceled": "order did not complete",
    "order.payment.pending": "payment not settled yet; order.completed follows",
    "order.approval.pending": "order not approved yet; order.completed follows",
    "payoutEntry.created": "payout bookkeeping; the order and return events carry the payment",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Json = Mapping[str, Any]
Handler = Callable[[str, Json, Json], NormalizedEvent]


class FastSpringAdapter(ProviderAdapter):
    name: ClassVar[str] = "fastspring"
    # FastSpring only announces a chargeback when it is filed; no outcome ever follows
    reports_dispute_outcome: ClassVar[bool] = False

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        if any(not secret for secret in self.secrets):
            raise ValueError("fastspring: empty HMAC SHA256 secret")
        # the merchant types the secret into the webhook settings; FastSpring uses it as UTF-8 bytes
        self._keys = tuple(secret.encode("utf-8") for secret in self.secrets)
        self._handlers: dict[str, Handler] = {
            "order.completed": self._order_completed,
            "subscription.charge.completed": self._charge_completed,
            "return.created": self._return_created,
            "chargeback.created": self._chargeback_created,
        }

    # --- signature ---------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float) -> None:
        # The signature is optional at FastSpring, so an unsigned POST is refused rather than trusted.
        # No timestamp in the scheme, so there is no replay window to check.
        verify_hmac(
            self._keys,
            request.body,
            request.header(SIGNATURE_HEADER),
            algorithm="sha256",
            encoding="base64",
            header="X-FS-Signature",
        )

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        return SignedRequest(headers={SIGNATURE_HEADER: sign_hmac(secret.encode("utf-8"), body, "sha256", "base64")})

    # --- delivery id -------------------------------------------------------------------------------

    def delivery_id(self, request: WebhookRequest) -> str:
        """`events:<sha256 of the sorted event ids>`, else a body hash.

        FastSpring's ids are per event and survive its automatic retries; the POST as a whole has none.
        The same set of events posted again is the same delivery, whatever their order or formatting.
        """
        try:
            events = load_json_object(request.body).get("events")
            if not isinstance(events, list) or not events:
                return body_hash(request.body)
            ids = []
            for event in events:
                event_id = event.get("id") if isinstance(event, dict) else None
                if not isinstance(event_id, str) or not event_id.strip():
                    return body_hash(request.body)
                ids.append(event_id.strip())
            return "events:" + hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()
        except (PayloadError, ValueError, TypeError, RecursionError):
            return body_hash(request.body)

    # --- parse -------------------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """Every event of the POST, in order. One unreadable event fails the whole POST, which is
        kept for replay: it was stored as one unit and is processed as one."""
        events = load_json_object(request.body).get("events")
        if not isinstance(events, list):
            raise PayloadError("missing events array")
        normalized = []
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise PayloadError(f"events[{index}] is not an object")
            event_type = event.get("type")
            if not isinstance(event_type, str) or not event_type:
                raise PayloadError(f"events[{index}]: missing type")
            handler = self._handlers.get(event_type)
            if handler is None:
                normalized.append(ignored(event_type, _IGNORED.get(event_type, "event not used by the bridge")))
                continue
            data = event.get("data")
            if not isinstance(data, dict):
                raise PayloadError(f"events[{index}] {event_type}: missing data object")
            try:
                normalized.append(handler(event_type, event, data))
            except PayloadError as exc:
                raise PayloadError(f"events[{index}] {event_type}: {exc}") from None
            # ArithmeticError: decimal.Overflow from an absurd exponent is not an InvalidOperation
            except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                raise PayloadError(f"events[{index}] {event_type}: {exc}") from None
        return normalized

    def _order_completed(self, event_type: str, event: Json, data: Json) -> NormalizedEvent:
        if data.get("completed") is False:
            return ignored(event_type, "order not completed")
        order_id = _order_id(data)
        if order_id is None:
            raise PayloadError("missing data.order")
        currency = currency_code(data.get("currency"), "data.currency")
        amount = _major(data.get("total"), "data.total", currency)
        if amount == 0:
            return ignored(event_type, "nothing was paid (free order or full discount)")
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event_type,
            transaction_key=f"fastspring:order:{order_id}",
            amount=amount,
            tax=_optional_major(data, "tax", "data", currency),
            currency=currency,
            customer=_customer(data),
            product_id=_first_product(data),
            product_type="subscription" if _has_subscription(data) else "one_time",
            test_mode=_test_mode(event, data),
            occurred_at=_millis(event.get("created")),
        )

    def _charge_completed(self, event_type: str, event: Json, data: Json) -> NormalizedEvent:
        status = data.get("status")
        if status is not None and status != "successful":
            return ignored(event_type, f"charge status is {status!r}, not successful")
        # with Webhook Expansion `order` is the rebill order itself, without it only its id
        raw_order = data.get("order")
        order = raw_order if isinstance(raw_order, dict) else {}
        order_id = _order_id(order) if order else _text(raw_order)
        if order_id is None:
            raise PayloadError("missing data.order (the rebill order)")
        currency = currency_code(data.get("currency") or order.get("currency"), "data.currency")
        if data.get("total") is not None:
            amount = _major(data["total"], "data.total", currency)
        else:
            amount = _major(order.get("total"), "data.order.total", currency)
        if amount == 0:
            return ignored(event_type, "nothing was paid (free period or full discount)")
        # only the expanded rebill order (Webhook Expansion) names the tax of this charge
        tax = None
        if order.get("total") is not None and _major(order["total"], "data.order.total", currency) == amount:
            tax = _optional_major(order, "tax", "data.order", currency)
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event_type,
            transaction_key=f"fastspring:order:{order_id}",
            amount=amount,
            tax=tax,
            currency=currency,
            customer=_customer(data, order),
            product_id=_first_product(order) or _subscription_product(data.get("subscription")),
            product_type="subscription",
            test_mode=_test_mode(event, data, order),
            occurred_at=_millis(event.get("created")),
        )

    def _return_created(self, event_type: str, event: Json, data: Json) -> NormalizedEvent:
        raw_original = data.get("original")
        original = raw_original if isinstance(raw_original, dict) else {}
        order_id = _order_id(original) if original else _text(raw_original)
        if order_id is None:
            raise PayloadError("missing data.original (the returned order)")
        if data.get("completed") is False:
            return ignored(event_type, "return not completed (pending or unsuccessful)")
        currency = currency_code(data.get("currency"), "data.currency")
        amount = _major(data.get("totalReturn"), "data.totalReturn", currency)
        sale_amount: Decimal | None = None
        sale_tax: Decimal | None = None
        original_currency = original.get("currency")
        if (
            original
            and (original_currency is None or currency_code(original_currency, "original.currency") == currency)
            and original.get("total") is not None
        ):
            sale_amount = _major(original["total"], "data.original.total", currency)
            sale_tax = _optional_major(original, "tax", "data.original", currency)
        return NormalizedEvent(
            kind=EventKind.REFUND,
            event_type=event_type,
            transaction_key=f"fastspring:order:{order_id}",
            amount=amount,
            tax=_optional_major(data, "tax", "data", currency),
            currency=currency,
            customer=_customer(data, original),
            product_id=_first_product(data),
            test_mode=_test_mode(event, data),
            occurred_at=_millis(event.get("created")),
            full_refund=None if sale_amount is None else amount >= sale_amount,
            sale_amount=sale_amount,
            sale_tax=sale_tax,
            refund_id=_text(data.get("return")),
            reason=_text(data.get("reason")),
        )

    def _chargeback_created(self, event_type: str, event: Json, data: Json) -> NormalizedEvent:
        # the chargeback's own `id` is documented to match the order id
        order_id = _text(data.get("order")) or _text(data.get("id"))
        if order_id is None:
            raise PayloadError("missing data.order")
        currency = currency_code(data["currency"], "data.currency") if data.get("currency") is not None else None
        amount = None
        if currency is not None and data.get("chargebackAmount") is not None:
            amount = _major(data["chargebackAmount"], "data.chargebackAmount", currency)
        return NormalizedEvent(
            kind=EventKind.DISPUTE,
            event_type=event_type,
            transaction_key=f"fastspring:order:{order_id}",
            amount=amount,
            currency=currency,
            test_mode=_test_mode(event, data),
            occurred_at=_millis(event.get("created")),
            dispute_state=DisputeState.OPENED,
            reason=_text(data.get("reasonDescription")) or _text(data.get("reasonCode")),
        )


# --- payload helpers --------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


def _order_id(order: Json) -> str | None:
    # `order` is the internal id; `id` repeats it for backward compatibility
    return _text(order.get("order")) or _text(order.get("id"))


def _major(value: Any, field: str, currency: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"{field} is not an amount ({describe(value)})")
    if value < 0:
        raise ValueError(f"{field} is negative")
    return from_major_units(value, currency)


def _optional_major(obj: Json, field: str, where: str, currency: str) -> Decimal | None:
    return None if obj.get(field) is None else _major(obj[field], f"{where}.{field}", currency)


def _mapping(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _customer(data: Json, order: Json | None = None) -> CustomerFacts:
    """Buyer facts from the event's data, else from the order it expands (rebills, returns)."""
    order = order or {}
    buyer = _mapping(data.get("customer")) or _mapping(order.get("customer"))
    account = data.get("account") if data.get("account") is not None else order.get("account")
    contact = _mapping(_mapping(account).get("contact"))
    email = _text(buyer.get("email")) or _text(contact.get("email"))
    return CustomerFacts(
        email=email,
        customer_id=_account_id(account),
        # the merchant's own id, set through the /accounts API; it survives on rebills, tags do not
        external_id=_text(_mapping(_mapping(account).get("lookup")).get("custom")),
        name=_name(buyer) or _name(contact),
        metadata=_metadata(data.get("tags") if data.get("tags") is not None else order.get("tags")),
    )


def _account_id(account: Any) -> str | None:
    # an id without Webhook Expansion, the account object with it
    if isinstance(account, dict):
        return _text(account.get("id")) or _text(account.get("account"))
    return _text(account)


def _name(person: Json) -> str | None:
    parts = [p for p in (_text(person.get("first")), _text(person.get("last"))) if p]
    return " ".join(parts) or None


def _metadata(tags: Any) -> dict[str, str]:
    """Order `tags` as strings; Store Builder sends strings, the API may send numbers or booleans."""
    if not isinstance(tags, dict):
        return {}
    metadata: dict[str, str] = {}
    for name, value in tags.items():
        if isinstance(value, bool):
            metadata[str(name)] = "true" if value else "false"
        elif isinstance(value, str | int | Decimal):
            metadata[str(name)] = str(value)
    return metadata


def _items(order: Json) -> list[Json]:
    items = order.get("items")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _first_product(order: Json) -> str | None:
    # the first item that was actually paid for names the sale best; a free cross-sell does not
    items = _items(order)
    paid = [i for i in items if isinstance(i.get("subtotal"), int | Decimal) and i["subtotal"] > 0]
    for item in paid or items:
        product = _text(item.get("product"))
        if product:
            return product
    return None


def _has_subscription(order: Json) -> bool:
    return any(item.get("subscription") for item in _items(order))


def _subscription_product(subscription: Any) -> str | None:
    return _text(subscription.get("product")) if isinstance(subscription, dict) else None


def _test_mode(event: Json, *objects: Json) -> bool:
    # `live: false` marks a test order; the event and its data both carry it, either one suffices
    return any(source.get("live") is False for source in (event, *objects))


def _millis(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        return None
