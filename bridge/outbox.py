"""What a stored call means for Partnero: each event applied to its payment's ledger, and the
operations that bring Partnero to the new state, each to be sent exactly once.

Runs inside one store transaction per call, so a crash leaves either all of a call's effects or none.
A payment's ledger (`Payment`) records what was sold, what was refunded and which Partnero key is
live. Events move it forward; an event that moves nothing (the same payment announced again, a repeated
cumulative refund total) is recorded as a duplicate. Partnero has no partial refund, so re-booking a
sale at its net amount deletes the live transaction and creates `<transaction_key>~adj<n>`. The amounts
come from `bridge.ledger`: the endpoint's tax base, refunds counted once whatever their order, and a
refund in another currency than its sale left for the operator instead of guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from bridge import memory
from bridge.config import Endpoint
from bridge.coupons import CodePartner, fold
from bridge.events import DisputeState, EventKind, NormalizedEvent
from bridge.ledger import RefundLedger, commissionable, figure
from bridge.mapping import resolve_customer_key, resolve_partner
from bridge.store.base import (
    Customer,
    CustomerState,
    EventStatus,
    NewEvent,
    NewOperation,
    Operation,
    OpStatus,
    Payment,
    PaymentState,
    StoredCall,
    Transaction,
)

CREATE = "create"
DELETE = "delete"


def payment_key(provider_key: str) -> str:
    """The key a payment is recorded and sent under: the adapter's key with `~` (and `%`, the escape)
    percent-encoded, so that no id a provider can send ever spells a re-booking key."""
    return provider_key.replace("%", "%25").replace("~", "%7E")


def adjusted_key(transaction_key: str, revision: int) -> str:
    """The Partnero key of the n-th re-booking of a sale (after a partial refund or a won dispute)."""
    return f"{transaction_key}~adj{revision}"


@dataclass
class _Plan:
    """What one event does: its own status and reason, and the operations to append."""

    status: EventStatus
    reason: str | None = None
    customer_key: str | None = None
    duplicate_of: int | None = None
    ops: list[NewOperation] = field(default_factory=list)
    # something the operator must look at besides the event's own outcome (recorded as a skipped refund)
    attention: str | None = None
    warning: str | None = None
    attribution: dict[str, str] | None = None


def record_events(
    tx: Transaction,
    call: StoredCall,
    endpoint: Endpoint,
    events: list[NormalizedEvent],
    now: float,
    codes: Mapping[str, CodePartner] | None = None,
) -> list[int]:
    """Record each event of `call`, apply it to its payment and enqueue the resulting operations.

    `codes` are the partners of the discount codes on these sales, resolved beforehand (bridge.coupons)."""
    ids = []
    for seq, event in enumerate(events):
        if event.transaction_key is not None:
            key = payment_key(event.transaction_key)
            if key != event.transaction_key:
                # only then: copying the event (two dozen fields, frozen) was a tenth of recording a sale
                event = replace(event, transaction_key=key)
        plan = _plan(tx, endpoint, event, now, codes or {})
        if plan.attribution:
            event = replace(event, attribution=plan.attribution)
        event_id = tx.insert_event(
            NewEvent(
                call_id=call.id,
                endpoint=endpoint.name,
                seq=seq,
                kind=event.kind.value,
                event_type=event.event_type,
                transaction_key=event.transaction_key,
                data=event.to_json(),
                customer_key=plan.customer_key,
                status=plan.status,
                reason=plan.reason,
                operation_id=plan.duplicate_of,
                warning=plan.warning,
            ),
            now,
        )
        for op in plan.ops:
            if op.status is OpStatus.PENDING and endpoint.partnero.effective_dry_run:
                op = replace(op, status=OpStatus.SKIPPED, reason="dry run: recorded, not sent")
            tx.insert_operation(replace(op, event_id=event_id), now)
        if plan.attention:
            note = NewEvent(
                call.id,
                endpoint.name,
                seq,
                EventKind.REFUND.value,
                event.event_type,
                event.transaction_key,
                event.to_json(),
                plan.customer_key,
                EventStatus.SKIPPED,
                plan.attention,
            )
            tx.insert_event(note, now)
        ids.append(event_id)
    return ids


def _plan(
    tx: Transaction, endpoint: Endpoint, event: NormalizedEvent, now: float, codes: Mapping[str, CodePartner]
) -> _Plan:
    settings = endpoint.settings
    if event.kind is EventKind.IGNORED:
        return _Plan(EventStatus.IGNORED, event.reason)
    if event.test_mode and settings.test_mode == "skip":
        return _Plan(EventStatus.SKIPPED, "test mode (endpoint test_mode: skip)")
    if not event.transaction_key:
        return _Plan(EventStatus.SKIPPED, event.reason or f"{event.kind.value} without a transaction key")
    payment = tx.get_payment(endpoint.partnero.scope, event.transaction_key)
    if event.kind is EventKind.SALE:
        return _sale(tx, endpoint, event, payment, now, codes)
    if payment is None:
        # a reversal of a sale this bridge never saw: attempted once, a 404 is recorded as skipped
        payment = Payment(
            endpoint.partnero.scope,
            event.transaction_key,
            endpoint.name,
            PaymentState.ACTIVE,
            event.transaction_key,
            0,
            None,
            Decimal(0),
        )
    if event.kind is EventKind.REFUND:
        return _refund(tx, endpoint, event, payment, now)
    return _dispute(tx, endpoint, event, payment, now)


def _sale(
    tx: Transaction,
    endpoint: Endpoint,
    event: NormalizedEvent,
    payment: Payment | None,
    now: float,
    codes: Mapping[str, CodePartner],
) -> _Plan:
    assert event.transaction_key is not None
    paid = figure(event.amount, event.tax, event.currency)
    if paid is None:
        # the adapter says why the payload carries no amount (Creem's subscription.paid without one)
        return _Plan(EventStatus.SKIPPED, event.reason or "sale without amount or currency")
    basis = endpoint.settings.amount
    amount = commissionable(paid, basis)
    if amount <= 0:
        # a free order earns nothing, and Partnero has no meaning for a negative sale
        return _Plan(EventStatus.SKIPPED, f"sale amount {amount} is not positive")
    scope = endpoint.partnero.scope
    customer_key = sale_customer_key(tx, endpoint, event, payment)
    if customer_key is None:
        tried = ", ".join(endpoint.settings.customer_key)
        return _Plan(EventStatus.SKIPPED, f"no customer key (tried {tried})")
    warning = memory.learn(
        tx, scope, endpoint.provider, event.customer, customer_key, event.occurred_at, endpoint.name, now
    )
    if payment is not None and payment.sale_request is not None:
        first = tx.get_operation(scope, f"{CREATE}:{event.transaction_key}")
        duplicate_of = first.id if first else None
        return _Plan(
            EventStatus.DUPLICATE, "same payment already recorded", customer_key, duplicate_of, warning=warning
        )
    request: dict[str, Any] = {
        "customer": {"key": customer_key},
        "key": event.transaction_key,
        "amount": str(amount),
        "amount_units": paid.currency,
        "action": "sale",
    }
    if event.product_id:
        request["product_id"] = event.product_id
    if event.product_type:
        request["product_type"] = event.product_type
    sent_request, attribution = _with_customer_creation(tx, endpoint, event, customer_key, request, now, codes)
    plan = _Plan(EventStatus.QUEUED, customer_key=customer_key, warning=warning, attribution=attribution)
    op = NewOperation(
        scope,
        CREATE,
        event.transaction_key,
        event.transaction_key,
        endpoint.name,
        sent_request,
        customer_key=customer_key,
    )
    if payment is not None and payment.state is not PaymentState.ACTIVE:
        # the reversal arrived first: keep the sale on record, never send it
        op = replace(op, status=OpStatus.SKIPPED, reason="reversed before it was delivered (the reversal came first)")
        ledger = _ledger(payment).with_sale(paid)
        tx.put_payment(replace(payment, sale_request=request, amounts=ledger.dump()), now)
    elif payment is not None:
        # only partial refunds came first: book the sale at its net amount from the start
        ledger = _ledger(payment).with_sale(paid)
        refunded = ledger.refunded(basis)
        net = amount - refunded
        if net <= 0:
            op = replace(op, status=OpStatus.SKIPPED, reason="fully refunded before it was delivered")
        elif endpoint.settings.partial_refunds == "adjust" and refunded > 0:
            op = replace(op, request={**sent_request, "amount": str(net)})
        if foreign := ledger.foreign_currencies():
            currencies = ", ".join(sorted(foreign))
            plan.attention = f"needs attention: refunds in {currencies} of a sale in {paid.currency}; not applied"
        updated = replace(
            payment, sale_request=request, current_key=event.transaction_key, refunded=refunded, amounts=ledger.dump()
        )
        tx.put_payment(updated, now)
    else:
        tx.put_payment(
            Payment(
                endpoint.partnero.scope,
                event.transaction_key,
                endpoint.name,
                PaymentState.ACTIVE,
                event.transaction_key,
                0,
                request,
                Decimal(0),
                RefundLedger(sale=paid).dump(),
            ),
            now,
        )
    plan.ops.append(op)
    return plan


def sale_customer_key(
    tx: Transaction, endpoint: Endpoint, event: NormalizedEvent, payment: Payment | None = None
) -> str | None:
    """The customer key of a sale from the endpoint's sources, the customer memory included.

    A payment announced again keeps the key its sale was recorded under, even when this announcement
    carries less (a renewal without custom data, the provider's API)."""
    if payment is not None and payment.sale_request is not None:
        recorded = payment.sale_request.get("customer", {}).get("key")
        if recorded:
            return str(recorded)
    recall = memory.recall(tx, endpoint.partnero.scope, endpoint.provider)
    return resolve_customer_key(event, endpoint.settings.customer_key, recall)


def _with_customer_creation(
    tx: Transaction,
    endpoint: Endpoint,
    event: NormalizedEvent,
    customer_key: str,
    request: dict[str, Any],
    now: float,
    codes: Mapping[str, CodePartner],
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The first sale of a referred customer the bridge has not created yet creates it in the same call;
    with the request, which rule attributed the sale (for the operator).

    Merchants without a backend pass the partner key through checkout, or the buyer redeems a partner's
    discount code; the customer record makes later sales (renewals carry no custom data, nor the code)
    wait for this one and then go without the creation options.
    """
    scope = endpoint.partnero.scope
    known = tx.get_customer(scope, customer_key)
    code = event.coupon_code.strip() if event.coupon_code and event.coupon_code.strip() else None
    noted = {"code": code} if code else {}
    if known is not None and known.state is not CustomerState.NOT_REFERRED:
        # the first partner wins: a code does not take a referral from its customer
        rule = "sign-up" if known.creator_op_key and not known.creator_op_key.startswith(f"{CREATE}:") else "memory"
        return request, {"rule": rule, **({"partner": known.partner_key} if known.partner_key else {}), **noted}
    if not endpoint.settings.partner_key:
        return request, None
    sources = list(endpoint.settings.partner_key)
    if endpoint.settings.coupon_overrides and "coupon" in sources:
        sources = ["coupon", *(s for s in sources if s != "coupon")]
    if known is not None:
        # not referred so far (a sign-up without a partner, a partner Partnero refused): only a code,
        # which names a partner Partnero knows, may still attribute this customer
        sources = [s for s in sources if s == "coupon"]

    def code_partner(value: str) -> str | None:
        found = codes.get(fold(value))
        return found.label() if found else None

    matched = resolve_partner(event, sources, code_partner)
    if matched is None:
        return request, ({"rule": "none", **noted} if noted else None)
    source, label = matched
    by_code = codes.get(fold(code)) if source == "coupon" and code else None
    partner = by_code.reference() if by_code else {"key": label}
    customer: dict[str, Any] = {"key": customer_key, "partner": partner}
    if event.customer.email:
        customer["email"] = event.customer.email
    if event.customer.name:
        customer["name"] = event.customer.name
    assert event.transaction_key is not None
    creator = f"{CREATE}:{event.transaction_key}"
    tx.put_customer(Customer(scope, customer_key, CustomerState.PENDING, creator, event.customer.email, label), now)
    attribution = {"rule": "code" if by_code else "cookie", "source": source, "partner": label, **noted}
    return {**request, "customer": customer, "options": {"create_customer": True}}, attribution


def creates_customer(op: Operation) -> bool:
    """Whether `op` creates a Partnero customer (a sign-up, or a sale that creates its referred buyer)."""
    creating = op.action == "customer" or bool(op.request.get("options", {}).get("create_customer"))
    return creating and op.customer_key is not None


def settle(tx: Transaction, op: Operation, status: OpStatus, reason: str | None, now: float) -> None:
    """After an operation finished: what it means for the customer it was creating, if any."""
    if not creates_customer(op) or op.customer_key is None:
        return
    customer = tx.get_customer(op.scope, op.customer_key)
    if customer is None or customer.creator_op_key != op.op_key:
        return
    if status is OpStatus.DELIVERED:
        state = CustomerState.CREATED
    elif status is OpStatus.SKIPPED and reason and reason.startswith("not referred"):
        state = CustomerState.NOT_REFERRED
    elif status is OpStatus.PENDING:
        return
    else:
        state = CustomerState.FAILED
    tx.put_customer(replace(customer, state=state), now)


def reopen(tx: Transaction, op: Operation, now: float) -> None:
    """A replayed operation that creates a customer makes that customer's sales wait for it again."""
    if not creates_customer(op) or op.customer_key is None:
        return
    customer = tx.get_customer(op.scope, op.customer_key)
    if customer is not None and customer.creator_op_key == op.op_key:
        tx.put_customer(replace(customer, state=CustomerState.PENDING), now)


def _refund(tx: Transaction, endpoint: Endpoint, event: NormalizedEvent, payment: Payment, now: float) -> _Plan:
    if payment.state is not PaymentState.ACTIVE:
        return _Plan(EventStatus.DUPLICATE, f"payment already reversed ({payment.state.value})")
    ledger = _ledger(payment)
    if event.refund_id and ledger.has(event.refund_id):
        return _Plan(EventStatus.DUPLICATE, f"refund {event.refund_id} already applied")
    sale_currency = payment.sale_request["amount_units"] if payment.sale_request else ledger.currency
    if event.currency and sale_currency and event.currency != sale_currency:
        # comparing 10 GBP with a 12 EUR sale would invent a partial or a full refund: a person decides
        return _Plan(
            EventStatus.SKIPPED,
            f"needs attention: refund in {event.currency} of a sale in {sale_currency}; not applied",
        )
    basis = endpoint.settings.amount
    updated = ledger.with_refund(event)
    sale_amount = payment.sale_amount
    if sale_amount is None and updated.sale is not None:
        sale_amount = commissionable(updated.sale, basis)
    refunded = updated.refunded(basis) if updated.knows_amounts() else None
    full = (
        event.full_refund is True
        or (refunded is not None and sale_amount is not None and refunded >= sale_amount)
        or (refunded is None and event.full_refund is None)
    )
    policy = endpoint.settings.partial_refunds
    if full or policy == "full":
        plan = _reverse(tx, endpoint, payment, PaymentState.REFUNDED, now)
        tx.put_payment(
            replace(
                payment,
                state=PaymentState.REFUNDED,
                current_key=None,
                refunded=refunded if refunded is not None else payment.refunded,
                amounts=updated.dump(),
            ),
            now,
        )
        return plan
    if refunded is None:
        tx.put_payment(replace(payment, amounts=updated.dump()), now)
        return _Plan(EventStatus.SKIPPED, "partial refund of an unknown amount: the sale stays as sent")
    moved = replace(payment, refunded=refunded, amounts=updated.dump())
    if refunded == payment.refunded:
        tx.put_payment(moved, now)
        return _Plan(EventStatus.DUPLICATE, f"refunded total {refunded} already applied")
    if policy == "ignore" or sale_amount is None or payment.sale_request is None:
        tx.put_payment(moved, now)
        why = "partial_refunds: ignore" if policy == "ignore" else "its sale is unknown"
        return _Plan(EventStatus.SKIPPED, f"partial refund recorded, refunded {refunded} ({why})")
    return _rebook(tx, endpoint, moved, sale_amount - refunded, now)


def _ledger(payment: Payment) -> RefundLedger:
    return RefundLedger.load(payment.amounts, payment.refunded)


def _dispute(tx: Transaction, endpoint: Endpoint, event: NormalizedEvent, payment: Payment, now: float) -> _Plan:
    policy = endpoint.settings.disputes
    state = event.dispute_state or DisputeState.OPENED
    if policy == "ignore":
        return _Plan(EventStatus.SKIPPED, "dispute recorded (disputes: ignore)")
    if state is DisputeState.WON:
        if payment.state is not PaymentState.DISPUTED:
            return _Plan(EventStatus.SKIPPED, "dispute won: the sale stands")
        if payment.sale_amount is None or payment.sale_request is None:
            return _Plan(EventStatus.SKIPPED, "dispute won, but the sale is unknown to the bridge")
        return _rebook(
            tx,
            endpoint,
            replace(payment, state=PaymentState.ACTIVE, current_key=None),
            payment.sale_amount - payment.refunded,
            now,
        )
    if payment.state is PaymentState.DISPUTED:
        return _Plan(EventStatus.DUPLICATE, "already reversed by this dispute")
    if payment.state is PaymentState.REFUNDED:
        return _Plan(EventStatus.SKIPPED, "dispute on a refunded payment: nothing left to reverse")
    waits = policy == "reverse_on_lost" and endpoint.adapter.reports_dispute_outcome
    if state is DisputeState.OPENED and waits:
        return _Plan(EventStatus.SKIPPED, "dispute opened; reversal waits for the outcome")
    plan = _reverse(tx, endpoint, payment, PaymentState.DISPUTED, now)
    tx.put_payment(replace(payment, state=PaymentState.DISPUTED, current_key=None), now)
    return plan


def _reverse(tx: Transaction, endpoint: Endpoint, payment: Payment, state: PaymentState, now: float) -> _Plan:
    plan = _Plan(EventStatus.QUEUED)
    if payment.current_key is None:
        return _Plan(EventStatus.DUPLICATE, "nothing live in Partnero to reverse")
    plan.ops.append(_delete(tx, endpoint, payment, now))
    return plan


def _rebook(tx: Transaction, endpoint: Endpoint, payment: Payment, net: Decimal, now: float) -> _Plan:
    """Replace the live transaction by one for `net` under the next derived key (none when net <= 0)."""
    plan = _Plan(EventStatus.QUEUED)
    if payment.current_key is not None:
        plan.ops.append(_delete(tx, endpoint, payment, now))
    if net <= 0:
        tx.put_payment(replace(payment, state=PaymentState.REFUNDED, current_key=None), now)
        return plan
    assert payment.sale_request is not None
    revision = payment.revision + 1
    key = adjusted_key(payment.transaction_key, revision)
    request = {**payment.sale_request, "key": key, "amount": str(net)}
    plan.ops.append(NewOperation(endpoint.partnero.scope, CREATE, payment.transaction_key, key, endpoint.name, request))
    tx.put_payment(replace(payment, current_key=key, revision=revision), now)
    return plan


def _delete(tx: Transaction, endpoint: Endpoint, payment: Payment, now: float) -> NewOperation:
    assert payment.current_key is not None
    scope = endpoint.partnero.scope
    op = NewOperation(
        scope, DELETE, payment.transaction_key, payment.current_key, endpoint.name, {"key": payment.current_key}
    )
    create = tx.get_operation(scope, f"{CREATE}:{payment.current_key}")
    # never claimed, so never sent: cancel it rather than pay and claw back — decided by the store in one
    # conditional write, since another process may be claiming it at this very moment
    if create is not None and tx.cancel_unsent_operation(create.id, now, "superseded before it was sent"):
        return replace(op, status=OpStatus.SKIPPED, reason="its sale was never sent")
    if create is not None and create.status is OpStatus.SKIPPED:
        return replace(op, status=OpStatus.SKIPPED, reason="its sale was not sent (skipped)")
    return op
