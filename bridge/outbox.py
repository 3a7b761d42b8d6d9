"""What a stored call means for Partnero: its events recorded, and the operations to send exactly once.

Runs inside one store transaction per call, so a crash leaves either all of a call's effects or none.
Outbound dedup is by operation key per Partnero program (`create:<transaction_key>`,
`delete:<transaction_key>`): however many events, endpoints or replays announce a payment, Partnero
hears of it once. Ordering rules between a sale and its reversal live here too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bridge.config import Endpoint
from bridge.events import DisputeState, EventKind, NormalizedEvent
from bridge.mapping import resolve_customer_key
from bridge.store.base import (
    EventStatus,
    NewEvent,
    NewOperation,
    Operation,
    OpStatus,
    StoredCall,
    Transaction,
)

CREATE = "create"
DELETE = "delete"


def record_events(
    tx: Transaction, call: StoredCall, endpoint: Endpoint, events: list[NormalizedEvent], now: float
) -> list[int]:
    """Record each event of `call` and enqueue its Partnero operation; returns the new event ids."""
    ids = []
    for seq, event in enumerate(events):
        status, reason, customer_key, operation_id = _decide(tx, endpoint, event, now)
        ids.append(
            tx.insert_event(
                NewEvent(
                    call_id=call.id,
                    endpoint=endpoint.name,
                    seq=seq,
                    kind=event.kind.value,
                    event_type=event.event_type,
                    transaction_key=event.transaction_key,
                    data=event.to_json(),
                    customer_key=customer_key,
                    status=status,
                    reason=reason,
                    operation_id=operation_id,
                ),
                now,
            )
        )
    return ids


_Decision = tuple[EventStatus, str | None, str | None, int | None]


def _decide(tx: Transaction, endpoint: Endpoint, event: NormalizedEvent, now: float) -> _Decision:
    settings = endpoint.settings
    if event.kind is EventKind.IGNORED:
        return EventStatus.IGNORED, event.reason, None, None
    if event.test_mode and settings.test_mode == "skip":
        return EventStatus.SKIPPED, "test mode (endpoint test_mode: skip)", None, None
    if not event.transaction_key:
        return (
            EventStatus.SKIPPED,
            event.reason or f"{event.kind.value} without a transaction key",
            None,
            None,
        )
    if event.kind is EventKind.SALE:
        return _sale(tx, endpoint, event, now)
    if event.kind is EventKind.REFUND:
        return _refund(tx, endpoint, event, now)
    return _dispute(tx, endpoint, event, now)


def _sale(tx: Transaction, endpoint: Endpoint, event: NormalizedEvent, now: float) -> _Decision:
    assert event.transaction_key is not None
    if event.amount is None or not event.currency:
        return EventStatus.SKIPPED, "sale without amount or currency", None, None
    customer_key = resolve_customer_key(event, endpoint.settings.customer_key)
    if customer_key is None:
        tried = ", ".join(endpoint.settings.customer_key)
        return EventStatus.SKIPPED, f"no customer key (tried {tried})", None, None
    request: dict[str, Any] = {
        "customer": {"key": customer_key},
        "key": event.transaction_key,
        "amount": str(event.amount),
        "amount_units": event.currency,
        "action": "sale",
    }
    if event.product_id:
        request["product_id"] = event.product_id
    if event.product_type:
        request["product_type"] = event.product_type
    status, reason = OpStatus.PENDING, None
    if tx.get_operation(endpoint.partnero.scope, f"{DELETE}:{event.transaction_key}") is not None:
        status, reason = OpStatus.SKIPPED, "reversed before it was delivered (the refund arrived first)"
    return _enqueue(tx, endpoint, CREATE, event.transaction_key, request, status, reason, customer_key, now)


def _refund(tx: Transaction, endpoint: Endpoint, event: NormalizedEvent, now: float) -> _Decision:
    assert event.transaction_key is not None
    sale = tx.get_operation(endpoint.partnero.scope, f"{CREATE}:{event.transaction_key}")
    if not _is_full_refund(event, sale) and endpoint.settings.partial_refunds != "full":
        refunded = event.amount if event.amount is not None else event.refunded_total
        return (
            EventStatus.SKIPPED,
            f"partial refund ({refunded} {event.currency or ''}) recorded; the sale stays as sent".replace(" )", ")"),
            None,
            None,
        )
    return _reverse(tx, endpoint, event.transaction_key, sale, now)


def _dispute(tx: Transaction, endpoint: Endpoint, event: NormalizedEvent, now: float) -> _Decision:
    assert event.transaction_key is not None
    policy = endpoint.settings.disputes
    state = event.dispute_state or DisputeState.OPENED
    if state is DisputeState.WON:
        return EventStatus.SKIPPED, "dispute won: the sale stands", None, None
    if policy == "ignore":
        return EventStatus.SKIPPED, "dispute recorded (disputes: ignore)", None, None
    if state is DisputeState.OPENED and policy == "reverse_on_lost" and endpoint.adapter.reports_dispute_outcome:
        return EventStatus.SKIPPED, "dispute opened; reversal waits for the outcome", None, None
    sale = tx.get_operation(endpoint.partnero.scope, f"{CREATE}:{event.transaction_key}")
    return _reverse(tx, endpoint, event.transaction_key, sale, now)


def _reverse(
    tx: Transaction, endpoint: Endpoint, transaction_key: str, sale: Operation | None, now: float
) -> _Decision:
    status, reason = OpStatus.PENDING, None
    if sale is not None and sale.status is OpStatus.PENDING and sale.attempts == 0:
        # never sent: cancel both rather than pay and claw back
        tx.update_operation(sale.id, now, status=OpStatus.SKIPPED, reason="reversed before it was delivered")
        status, reason = OpStatus.SKIPPED, "its sale was never sent"
    elif sale is not None and sale.status in (OpStatus.SKIPPED, OpStatus.DEAD):
        status, reason = OpStatus.SKIPPED, f"its sale was not delivered ({sale.status.value})"
    return _enqueue(tx, endpoint, DELETE, transaction_key, {"key": transaction_key}, status, reason, None, now)


def _enqueue(
    tx: Transaction,
    endpoint: Endpoint,
    action: str,
    transaction_key: str,
    request: dict[str, Any],
    status: OpStatus,
    reason: str | None,
    customer_key: str | None,
    now: float,
) -> _Decision:
    scope = endpoint.partnero.scope
    op_key = f"{action}:{transaction_key}"
    existing = tx.get_operation(scope, op_key)
    if existing is not None:
        return (
            EventStatus.DUPLICATE,
            f"same payment already handled (operation {existing.id})",
            customer_key,
            (existing.id),
        )
    if status is OpStatus.PENDING and endpoint.partnero.effective_dry_run:
        status, reason = OpStatus.SKIPPED, "dry run: recorded, not sent"
    new = NewOperation(scope, op_key, action, transaction_key, endpoint.name, request, status, reason)
    return EventStatus.QUEUED, None, customer_key, tx.insert_operation(new, now)


def _is_full_refund(event: NormalizedEvent, sale: Operation | None) -> bool:
    if event.full_refund is not None:
        return event.full_refund
    sale_amount = event.sale_amount
    if sale_amount is None and sale is not None:
        sale_amount = Decimal(sale.request["amount"])
    refunded = event.refunded_total if event.refunded_total is not None else event.amount
    if refunded is None or sale_amount is None:
        return True
    return refunded >= sale_amount
