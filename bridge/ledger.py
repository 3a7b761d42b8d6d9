"""The money a payment's ledger keeps: each figure as the provider reported it, and the commissionable
amounts worked out from those figures in the endpoint's tax basis.

A figure is what the buyer paid or got back, tax included, with the tax inside it when the provider
says. The commission base is `excluding_tax` by default (the merchant of record keeps the tax) or
`including_tax`; a refund the provider reports only gross is pro-rated by its sale's own tax share, so
a sale, its partial refunds and its disputes are always measured on one base.

Refunds are kept as reported, never as a running sum: one refund by its id, the highest cumulative
total a provider reported, and refunds that carry neither. The refunded amount is the larger of that
total and the sum of the others, so it is the same whatever order the events arrived in and whichever
event families announced them (a cumulative total and the single refunds it adds up never count twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from bridge.events import NormalizedEvent
from bridge.money import currency_exponent

TaxBasis = Literal["excluding_tax", "including_tax"]


@dataclass(frozen=True)
class Figure:
    """An amount as reported: `gross` includes tax, `tax` is the part that is tax (None: not reported)."""

    gross: Decimal
    tax: Decimal | None
    currency: str

    def to_json(self) -> dict[str, str | None]:
        return {"gross": str(self.gross), "tax": None if self.tax is None else str(self.tax), "currency": self.currency}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Figure:
        tax = data.get("tax")
        return cls(Decimal(data["gross"]), None if tax is None else Decimal(tax), str(data["currency"]))


def figure(gross: Decimal | None, tax: Decimal | None, currency: str | None) -> Figure | None:
    if gross is None or not currency:
        return None
    # a tax larger than the amount it is part of is a provider's rounding or a misread: ignore it
    return Figure(gross, tax if tax is not None and 0 <= tax <= gross else None, currency)


def commissionable(amount: Figure, basis: TaxBasis, sale: Figure | None = None) -> Decimal:
    """`amount` on the commission base; a refund reported gross only takes its sale's tax share."""
    if basis == "including_tax":
        return amount.gross
    if amount.tax is not None:
        return amount.gross - amount.tax
    if sale is None or sale.tax is None or sale.gross <= 0 or sale.currency != amount.currency:
        # the provider reports no tax anywhere for this payment: the amount is the base
        return amount.gross
    share = amount.gross * (sale.gross - sale.tax) / sale.gross
    return share.quantize(Decimal(1).scaleb(-currency_exponent(amount.currency)), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class RefundLedger:
    """What the providers reported about one payment's money, as kept in `Payment.amounts`."""

    sale: Figure | None = None
    by_id: Mapping[str, Figure | None] = field(default_factory=dict)
    reported: Figure | None = None
    anonymous: tuple[Figure, ...] = ()
    # refunded amount (booked basis) recorded by a bridge that kept no figures yet
    legacy: Decimal = Decimal(0)

    @classmethod
    def load(cls, amounts: Mapping[str, Any], legacy_refunded: Decimal) -> RefundLedger:
        if not amounts.get("figures"):
            # written before figures were kept: its ids still dedup, its refunded amount still counts
            return cls(by_id=dict.fromkeys(amounts.get("ids", ())), legacy=legacy_refunded)
        sale, reported = amounts.get("sale"), amounts.get("reported")
        return cls(
            sale=Figure.from_json(sale) if sale else None,
            by_id={k: Figure.from_json(v) if v else None for k, v in amounts.get("by_id", {}).items()},
            reported=Figure.from_json(reported) if reported else None,
            anonymous=tuple(Figure.from_json(v) for v in amounts.get("anonymous", ())),
            legacy=Decimal(amounts.get("legacy", "0")),
        )

    def dump(self) -> dict[str, Any]:
        return {
            "figures": True,
            "sale": self.sale.to_json() if self.sale else None,
            "by_id": {k: v.to_json() if v else None for k, v in self.by_id.items()},
            "reported": self.reported.to_json() if self.reported else None,
            "anonymous": [v.to_json() for v in self.anonymous],
            "legacy": str(self.legacy),
        }

    @property
    def currency(self) -> str | None:
        """The payment's currency as far as the ledger knows it: its sale's, else its first refund's."""
        if self.sale is not None:
            return self.sale.currency
        known = [f for f in (self.reported, *self.by_id.values(), *self.anonymous) if f is not None]
        return known[0].currency if known else None

    def has(self, refund_id: str) -> bool:
        return refund_id in self.by_id

    def with_sale(self, sale: Figure) -> RefundLedger:
        return replace(self, sale=sale)

    def with_refund(self, event: NormalizedEvent) -> RefundLedger:
        """The ledger after a refund event: its own refund, its cumulative total, its sale's size."""
        ledger = self
        if ledger.sale is None and (sale := figure(event.sale_amount, event.sale_tax, event.currency)):
            ledger = replace(ledger, sale=sale)
        total = figure(event.refunded_total, event.refunded_total_tax, event.currency)
        if total is not None and (ledger.reported is None or total.gross > ledger.reported.gross):
            ledger = replace(ledger, reported=total)
        single = figure(event.amount, event.tax, event.currency)
        if event.refund_id:
            ledger = replace(ledger, by_id={**ledger.by_id, event.refund_id: single})
        elif single is not None and total is None:
            ledger = replace(ledger, anonymous=(*ledger.anonymous, single))
        return ledger

    def knows_amounts(self) -> bool:
        singles = [f for f in (*self.by_id.values(), *self.anonymous) if f is not None]
        return bool(self.reported or singles or self.legacy)

    def refunded(self, basis: TaxBasis) -> Decimal:
        """The refunded amount on the commission base, from figures in the payment's currency."""
        currency = self.currency
        singles = [f for f in (*self.by_id.values(), *self.anonymous) if f is not None and f.currency == currency]
        summed = sum((commissionable(f, basis, self.sale) for f in singles), Decimal(0))
        total = Decimal(0)
        if self.reported is not None and self.reported.currency == currency:
            total = commissionable(self.reported, basis, self.sale)
        return max(total, summed + self.legacy)

    def foreign_currencies(self) -> set[str]:
        """Currencies of refunds that are not the payment's: never applied, shown to the operator."""
        currency = self.currency
        figures = (self.reported, *self.by_id.values(), *self.anonymous)
        return {f.currency for f in figures if f is not None and f.currency != currency}
