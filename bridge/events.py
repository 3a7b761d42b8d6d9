"""The normalized domain events every provider adapter produces, and their JSON form for the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    SALE = "sale"
    REFUND = "refund"
    DISPUTE = "dispute"
    IGNORED = "ignored"


class DisputeState(StrEnum):
    """Where a chargeback stands; `opened` is all some providers ever say."""

    OPENED = "opened"
    LOST = "lost"
    WON = "won"


@dataclass(frozen=True)
class CustomerFacts:
    """What a payment says about its buyer; the customer-key sources read these."""

    email: str | None = None
    customer_id: str | None = None
    external_id: str | None = None
    name: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NormalizedEvent:
    """One thing a provider told us about one payment.

    `transaction_key` names the payment, never the event (`<provider>:<kind>:<id>`), so several events
    announcing one payment resolve to one key, and a refund names the key of the sale it reverses.
    For a sale `amount` is the sale amount; for a refund it is the amount of *this* refund when the
    provider says it, and `refunded_total` the cumulative refunded amount when the provider reports that.

    Every amount is what the buyer paid or got back after discounts, **tax included**; `tax`,
    `refunded_total_tax` and `sale_tax` are the tax inside `amount`, `refunded_total` and `sale_amount`
    when the provider reports it (None: it does not say). The ledger takes the commission base from
    these (`bridge.ledger`), so an adapter never chooses it.
    """

    kind: EventKind
    event_type: str
    transaction_key: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    customer: CustomerFacts = field(default_factory=CustomerFacts)
    product_id: str | None = None
    product_type: str | None = None
    test_mode: bool = False
    occurred_at: datetime | None = None
    full_refund: bool | None = None
    refunded_total: Decimal | None = None
    sale_amount: Decimal | None = None
    dispute_state: DisputeState | None = None
    # the provider's id of one refund, so the same refund announced twice is applied once
    refund_id: str | None = None
    reason: str | None = None
    tax: Decimal | None = None
    refunded_total_tax: Decimal | None = None
    sale_tax: Decimal | None = None
    # the discount code the buyer redeemed, as the provider reports it (the `coupon` partner source)
    coupon_code: str | None = None
    # which rule attributed a sale to a partner, set by the ledger (bridge.outbox), not by adapters:
    # {"rule": "cookie" | "sign-up" | "code" | "memory", "partner": ..., "source": ..., "code": ...}
    attribution: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "event_type": self.event_type,
            "transaction_key": self.transaction_key,
            "amount": _dec_out(self.amount),
            "currency": self.currency,
            "customer": {
                "email": self.customer.email,
                "customer_id": self.customer.customer_id,
                "external_id": self.customer.external_id,
                "name": self.customer.name,
                "metadata": dict(self.customer.metadata),
            },
            "product_id": self.product_id,
            "product_type": self.product_type,
            "test_mode": self.test_mode,
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "full_refund": self.full_refund,
            "refunded_total": _dec_out(self.refunded_total),
            "sale_amount": _dec_out(self.sale_amount),
            "dispute_state": self.dispute_state.value if self.dispute_state else None,
            "refund_id": self.refund_id,
            "reason": self.reason,
            "tax": _dec_out(self.tax),
            "refunded_total_tax": _dec_out(self.refunded_total_tax),
            "sale_tax": _dec_out(self.sale_tax),
            "coupon_code": self.coupon_code,
            "attribution": dict(self.attribution) if self.attribution else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NormalizedEvent:
        customer = data.get("customer") or {}
        return cls(
            kind=EventKind(data["kind"]),
            event_type=data["event_type"],
            transaction_key=data.get("transaction_key"),
            amount=_dec_in(data.get("amount")),
            currency=data.get("currency"),
            customer=CustomerFacts(
                email=customer.get("email"),
                customer_id=customer.get("customer_id"),
                external_id=customer.get("external_id"),
                name=customer.get("name"),
                metadata=dict(customer.get("metadata") or {}),
            ),
            product_id=data.get("product_id"),
            product_type=data.get("product_type"),
            test_mode=bool(data.get("test_mode")),
            occurred_at=datetime.fromisoformat(data["occurred_at"]) if data.get("occurred_at") else None,
            full_refund=data.get("full_refund"),
            refunded_total=_dec_in(data.get("refunded_total")),
            sale_amount=_dec_in(data.get("sale_amount")),
            dispute_state=DisputeState(data["dispute_state"]) if data.get("dispute_state") else None,
            refund_id=data.get("refund_id"),
            reason=data.get("reason"),
            tax=_dec_in(data.get("tax")),
            refunded_total_tax=_dec_in(data.get("refunded_total_tax")),
            sale_tax=_dec_in(data.get("sale_tax")),
            coupon_code=data.get("coupon_code"),
            attribution=dict(data["attribution"]) if data.get("attribution") else None,
        )


def ignored(event_type: str, reason: str) -> NormalizedEvent:
    """An event the bridge does not act on, with the reason the operator will see."""
    return NormalizedEvent(kind=EventKind.IGNORED, event_type=event_type, reason=reason)


def _dec_out(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec_in(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
