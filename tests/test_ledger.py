"""The payment ledger's money rules: one tax base for sales, refunds and disputes; refunds kept as
reported so their order does not matter; a refund in another currency never applied."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent
from bridge.ledger import Figure, RefundLedger, commissionable
from bridge.store.base import PaymentState
from providers import registry
from tests.ledger_kit import LedgerHarness

KEY = "p:1"


def sale(amount: str, tax: str | None = None, currency: str = "EUR", **extra: Any) -> NormalizedEvent:
    return NormalizedEvent(
        kind=EventKind.SALE,
        event_type="sale",
        transaction_key=extra.pop("key", KEY),
        amount=Decimal(amount),
        tax=None if tax is None else Decimal(tax),
        currency=currency,
        customer=CustomerFacts(email="buyer@example.com"),
        **extra,
    )


def refund(currency: str = "EUR", **fields: Any) -> NormalizedEvent:
    money = {k: Decimal(v) for k, v in fields.items() if k in _MONEY and v is not None}
    rest = {k: v for k, v in fields.items() if k not in _MONEY}
    return NormalizedEvent(
        kind=EventKind.REFUND,
        event_type=rest.pop("event_type", "refund"),
        transaction_key=rest.pop("key", KEY),
        currency=currency,
        **money,
        **rest,
    )


_MONEY = {"amount", "tax", "refunded_total", "refunded_total_tax", "sale_amount", "sale_tax"}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Any]:
    made: list[LedgerHarness] = []

    def make(**settings: Any) -> LedgerHarness:
        harness = LedgerHarness(tmp_path / f"l{len(made)}.db", **settings)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def test_the_commission_base_excludes_tax_unless_the_endpoint_says_otherwise(ledger: Any) -> None:
    net, gross = ledger(), ledger(amount="including_tax")
    for h in (net, gross):
        h.apply(sale("120.00", "20.00"))
    assert net.live() == {KEY: Decimal("100.00")}
    assert gross.live() == {KEY: Decimal("120.00")}


def test_a_gross_refund_is_pro_rated_by_its_sales_tax_share(ledger: Any) -> None:
    # Lemon Squeezy: 100 + 20 VAT, refunds reported as a cumulative gross `refunded_amount`
    h = ledger()
    h.apply(sale("120.00", "20.00"))
    h.apply(refund(refunded_total="60.00", sale_amount="120.00", sale_tax="20.00"))
    assert h.live_amount() == Decimal("50.00")
    h.apply(refund(refunded_total="100.00", sale_amount="120.00", sale_tax="20.00"))
    assert h.live_amount() == Decimal("16.67")
    h.apply(refund(refunded_total="120.00", sale_amount="120.00", sale_tax="20.00"))
    assert h.live() == {}


def test_with_tax_included_refunds_are_measured_gross(ledger: Any) -> None:
    h = ledger(amount="including_tax")
    h.apply(sale("120.00", "20.00"))
    h.apply(refund(refunded_total="60.00"))
    assert h.live_amount() == Decimal("60.00")


def test_a_refund_that_names_its_tax_uses_it(ledger: Any) -> None:
    # Polar: refund amount 30.00 + tax 2.40 of an order of 90.00 + 7.20
    h = ledger()
    h.apply(sale("97.20", "7.20", currency="USD"))
    h.apply(refund(currency="USD", amount="32.40", tax="2.40", refund_id="r1"))
    assert h.live_amount() == Decimal("60.00")


def test_a_refund_before_its_sale_is_pro_rated_once_the_sale_is_known(ledger: Any) -> None:
    h = ledger()
    h.apply(refund(amount="60.00", refund_id="r1", full_refund=False))
    assert h.live() == {}
    h.apply(sale("120.00", "20.00"))
    assert h.live_amount() == Decimal("50.00")


@pytest.mark.parametrize("order", [(0, 1, 2), (0, 2, 1), (1, 0, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)])
def test_a_cumulative_total_and_the_refund_it_counts_are_applied_once(ledger: Any, order: tuple[int, ...]) -> None:
    # Polar: order.paid 97.20 → order.refunded (total 32.40) and refund.updated (the same 32.40)
    events = [
        sale("97.20", "7.20", currency="USD"),
        refund(currency="USD", refunded_total="32.40", refunded_total_tax="2.40", full_refund=False),
        refund(currency="USD", amount="32.40", tax="2.40", refund_id="re_1"),
    ]
    h = ledger()
    for i in order:
        h.apply(events[i])
    assert h.live_amount() == Decimal("60.00")


def test_a_refund_in_another_currency_needs_attention_and_reverses_nothing(ledger: Any) -> None:
    h = ledger()
    h.apply(sale("12.10", "2.10"))
    [event] = h.apply(refund(currency="GBP", amount="12.10", full_refund=True, refund_id="r1"))
    assert event.status == "skipped"
    assert event.reason == "needs attention: refund in GBP of a sale in EUR; not applied"
    assert h.live_amount() == Decimal("10.00")
    payment = h.payment(KEY)
    assert payment is not None and payment.state is PaymentState.ACTIVE


def test_a_refund_in_another_currency_before_its_sale_is_not_applied_to_it(ledger: Any) -> None:
    h = ledger()
    h.apply(refund(currency="EUR", amount="5.00", refund_id="r1", full_refund=False))
    h.apply(sale("30.00", currency="USD"))
    assert h.live_amount() == Decimal("30.00")
    [note] = [e for e in h.events() if e.status == "skipped" and e.kind == "refund" and e.event_type == "sale"]
    assert note.reason == "needs attention: refunds in EUR of a sale in USD; not applied"


def test_a_dispute_reverses_and_a_won_one_restores_the_net_on_the_same_base(ledger: Any) -> None:
    h = ledger()
    h.apply(sale("120.00", "20.00"))
    h.apply(refund(refunded_total="60.00", sale_amount="120.00", sale_tax="20.00"))
    h.apply(NormalizedEvent(EventKind.DISPUTE, "dispute", KEY, dispute_state=DisputeState.LOST))
    assert h.live() == {}
    h.apply(NormalizedEvent(EventKind.DISPUTE, "dispute", KEY, dispute_state=DisputeState.WON))
    assert h.live_amount() == Decimal("50.00")


def test_a_ledger_written_before_figures_were_kept_still_counts_its_refunds() -> None:
    old = RefundLedger.load({"ids": ["re_1"]}, Decimal("4.00"))
    assert old.has("re_1")
    after = old.with_refund(refund(amount="1.00", refund_id="re_2"))
    assert after.refunded("excluding_tax") == Decimal("5.00")


def test_pro_rating_rounds_to_the_currencys_own_minor_unit() -> None:
    for currency, sale_gross, sale_tax, part, expected in (
        ("JPY", "1100", "100", "500", "455"),
        ("KWD", "11.000", "1.000", "5.000", "4.545"),
        ("USD", "120.00", "20.00", "100.00", "83.33"),
    ):
        paid = Figure(Decimal(sale_gross), Decimal(sale_tax), currency)
        back = Figure(Decimal(part), None, currency)
        assert commissionable(back, "excluding_tax", paid) == Decimal(expected)


def test_every_provider_page_states_what_is_booked() -> None:
    # issue 11: each docs/providers/<name>.md has the table "event -> booked amount, field by field"
    docs = Path(__file__).resolve().parent.parent / "docs" / "providers"
    pages = {"hmac": "hmac_generic"}
    for name in registry():
        page = (docs / f"{pages.get(name, name)}.md").read_text(encoding="utf-8")
        assert "| Booked amount" in page or "Booked amount, field by field" in page, name
