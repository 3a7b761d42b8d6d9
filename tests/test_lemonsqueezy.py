"""Lemon Squeezy adapter: signature vector and round trips, parse of every fixture, dedup rules, junk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError, parse_config
from bridge.events import CustomerFacts, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import (
    AdapterOptions,
    PayloadError,
    ProviderUnavailable,
    SignatureError,
    WebhookRequest,
    body_hash,
)
from providers.lemonsqueezy import CODE_NOT_REDEEMED, CODE_UNKNOWN, LemonSqueezyAdapter, LemonSqueezyOptions
from providers.signatures import sign_hmac, verify_hmac
from tests.ledger_kit import LedgerHarness
from tests.provider_api_server import API_KEY, ProviderApiServer, read_once

FIXTURES = Path(__file__).parent / "fixtures" / "lemonsqueezy"
SECRET = "whsec-lemon-test-1"
NOW = 1_700_000_000.0

# Fixture sources (every edit is listed in tests/fixtures/lemonsqueezy/SOURCES.md):
#   "pay @ dd766aa" = https://github.com/pay-rails/pay/tree/dd766aa04c7837bf5d5456beb7195e736c68f6b2/test/fixtures/files/lemon_squeezy
#   "pay @ f58eb8e" = https://github.com/pay-rails/pay/tree/f58eb8e06b85dc553cbcb15b8e4c4c5d2c170b47/test/fixtures/files/lemon_squeezy
#   custom data sample: https://docs.lemonsqueezy.com/help/checkout/passing-custom-data


def adapter(*secrets: str, **options: Any) -> LemonSqueezyAdapter:
    return LemonSqueezyAdapter(secrets or (SECRET,), AdapterOptions(**options))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture(name))
    return loaded


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    return request(body, adapter(secret).sign(body, secret, NOW).headers)


def parse_one(body: bytes, **options: Any) -> NormalizedEvent:
    events = adapter(**options).parse(request(body))
    assert len(events) == 1
    return events[0]


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


# --- public vector ------------------------------------------------------------------------------------

RFC4231_KEY = b"Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_HMAC_SHA256 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_rfc4231_case_2_through_the_shared_helpers() -> None:
    assert sign_hmac(RFC4231_KEY, RFC4231_DATA) == RFC4231_HMAC_SHA256
    verify_hmac([RFC4231_KEY], RFC4231_DATA, RFC4231_HMAC_SHA256)


def test_rfc4231_case_2_through_the_adapter() -> None:
    signed_request = adapter("Jefe").sign(RFC4231_DATA, "Jefe", NOW)
    assert signed_request.headers == {"x-signature": RFC4231_HMAC_SHA256}
    assert signed_request.query_string == ""
    adapter("Jefe").verify(request(RFC4231_DATA, {"x-signature": RFC4231_HMAC_SHA256}), NOW)


def test_a_secret_is_used_as_utf8_bytes() -> None:
    secret = "clé-secrète"
    expected = sign_hmac(secret.encode("utf-8"), RFC4231_DATA)
    assert adapter(secret).sign(RFC4231_DATA, secret, NOW).headers["x-signature"] == expected


# --- verify ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "e2e.json"))
def test_sign_then_verify_round_trips_every_fixture(name: str) -> None:
    body = fixture(name)  # sources: SOURCES.md, pay-rails/pay @ dd766aa / f58eb8e
    signed_request = signed(body)
    assert signed_request.headers["x-event-name"] == json.loads(body)["meta"]["event_name"]
    adapter().verify(signed_request, NOW)


def test_no_timestamp_so_no_tolerance_window() -> None:
    body = fixture("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    adapter().verify(signed(body), 0.0)
    adapter().verify(signed(body), NOW + 10 * 365 * 86400)


def test_wrong_secret_is_a_mismatch() -> None:
    body = fixture("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    with pytest.raises(SignatureError, match=r"^X-Signature does not match$"):
        adapter("another-secret").verify(signed(body, SECRET), NOW)


def test_missing_header_is_missing() -> None:
    with pytest.raises(SignatureError, match=r"^missing X-Signature$"):
        adapter().verify(request(b"{}"), NOW)
    with pytest.raises(SignatureError, match=r"^missing X-Signature$"):
        adapter().verify(request(b"{}", {"x-signature": ""}), NOW)


def test_tampered_body_is_a_mismatch() -> None:
    body = fixture("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    headers = dict(signed(body).headers)
    tampered = body.replace(b'"total": 5899', b'"total": 9999')
    assert tampered != body
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(tampered, headers), NOW)


def test_reserialized_json_does_not_verify() -> None:
    body = fixture("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    headers = dict(signed(body).headers)
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(compact, headers), NOW)


@pytest.mark.parametrize("value", ["not-hex", "abc", "sha256=" + RFC4231_HMAC_SHA256])
def test_malformed_header(value: str) -> None:
    with pytest.raises(SignatureError, match=r"^malformed X-Signature$"):
        adapter().verify(request(b"{}", {"x-signature": value}), NOW)


def test_a_base64_signature_is_refused() -> None:
    # a third-party crate documents base64; Lemon Squeezy sends hex
    import base64

    raw = bytes.fromhex(sign_hmac(SECRET.encode(), b"{}"))
    with pytest.raises(SignatureError):
        adapter().verify(request(b"{}", {"x-signature": base64.b64encode(raw).decode()}), NOW)


def test_rotation_accepts_old_and_new_secret() -> None:
    body = fixture("order_refunded.json")  # built from pay-rails/pay @ dd766aa (SOURCES.md)
    rotating = adapter("old-secret", "new-secret")
    rotating.verify(signed(body, "old-secret"), NOW)
    rotating.verify(signed(body, "new-secret"), NOW)
    with pytest.raises(SignatureError, match="does not match"):
        rotating.verify(signed(body, "third-secret"), NOW)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        LemonSqueezyAdapter(["ok-secret", ""], AdapterOptions())


def test_sign_leaves_out_the_event_header_for_junk() -> None:
    assert set(adapter().sign(b"not json", SECRET, NOW).headers) == {"x-signature"}


def test_registered_under_its_name() -> None:
    assert get_adapter_class("lemonsqueezy") is LemonSqueezyAdapter


# --- parse: sales -----------------------------------------------------------------------------------------


def test_order_created_is_a_sale_under_the_order_key() -> None:
    # pay-rails/pay order_created.json @ dd766aa + docs custom-data sample (SOURCES.md)
    event = parse_one(fixture("order_created.json"))
    assert event == NormalizedEvent(
        kind=EventKind.SALE,
        event_type="order_created",
        transaction_key="lemonsqueezy:order:1",
        amount=Decimal("58.99"),
        tax=Decimal("0.00"),
        currency="USD",
        customer=CustomerFacts(
            email="dan@lemonsqueezy.com",
            customer_id="1",
            name="Dan R",
            metadata={"user_id": "123", "campaign_id": "abc"},
        ),
        product_id="1",
        product_type="1",
        test_mode=False,
        occurred_at=datetime(2023, 1, 17, 12, 26, 23, tzinfo=UTC),
    )
    assert str(event.amount) == "58.99"


def test_upstream_order_without_custom_data_or_meta_test_mode() -> None:
    # the pay-rails/pay sample as published carries neither meta.custom_data nor meta.test_mode
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa (SOURCES.md)
    payload["meta"] = {"event_name": "order_created"}
    event = parse_one(encode(payload))
    assert event.customer.metadata == {}
    assert event.test_mode is False
    assert event.transaction_key == "lemonsqueezy:order:1"


def test_test_mode_order() -> None:
    event = parse_one(fixture("order_created_test_mode.json"))  # pay-rails/pay @ dd766aa, edited
    assert event.kind is EventKind.SALE
    assert event.test_mode is True
    assert event.transaction_key == "lemonsqueezy:order:2"


def test_attributes_test_mode_alone_marks_test_data() -> None:
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    payload["meta"]["test_mode"] = False
    payload["data"]["attributes"]["test_mode"] = True
    assert parse_one(encode(payload)).test_mode is True


def test_meta_test_mode_alone_marks_test_data() -> None:
    payload = fixture_json("subscription_payment_refunded_renewal.json")  # pay-rails/pay @ dd766aa, edited
    payload["meta"]["test_mode"] = True
    assert payload["data"]["attributes"]["test_mode"] is False
    assert parse_one(encode(payload)).test_mode is True


def test_renewal_invoice_is_a_sale_under_the_invoice_key() -> None:
    # pay-rails/pay subscription_payment_success.json @ dd766aa, billing_reason → renewal (SOURCES.md)
    event = parse_one(fixture("subscription_payment_success_renewal.json"))
    assert event == NormalizedEvent(
        kind=EventKind.SALE,
        event_type="subscription_payment_success",
        transaction_key="lemonsqueezy:invoice:2",
        amount=Decimal("9.99"),
        tax=Decimal("0.00"),
        currency="USD",
        customer=CustomerFacts(
            email="gernser@yahoo.com",
            customer_id="1",
            name="Darlene Daugherty",
            metadata={"user_id": "123"},
        ),
        test_mode=False,
        occurred_at=datetime(2023, 2, 18, 12, 16, 24, tzinfo=UTC),
    )


def test_first_subscription_payment_counted_once() -> None:
    # order_created and subscription_payment_success (initial) announce the same first payment
    order = parse_one(fixture("order_created.json"))  # pay-rails/pay @ dd766aa, edited
    initial = parse_one(fixture("subscription_payment_success.json"))  # pay-rails/pay @ dd766aa, as is
    assert order.kind is EventKind.SALE
    assert initial.kind is EventKind.IGNORED
    assert initial.transaction_key is None
    assert initial.reason == "first subscription payment: counted by order_created under the order key"


def test_plan_change_charge_is_a_sale_of_its_invoice() -> None:
    # pay-rails/pay subscription_payment_success.json @ dd766aa, billing_reason → updated (SOURCES.md):
    # the prorated charge of a plan change is money paid, and no order_created announces it
    event = parse_one(fixture("subscription_payment_success_updated.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key is not None and event.transaction_key.startswith("lemonsqueezy:invoice:")


def test_sales_name_the_tax_inside_the_total() -> None:
    # Order / Subscription invoice objects (docs.lemonsqueezy.com/api): total, of which tax
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    payload["data"]["attributes"].update(subtotal=5000, discount_total=500, tax=900, total=5400)
    assert (parse_one(encode(payload)).amount, parse_one(encode(payload)).tax) == (Decimal("54.00"), Decimal("9.00"))
    # a tax-inclusive price: subtotal already holds the tax, total - tax is still the net
    payload["data"]["attributes"].update(subtotal=6000, discount_total=0, tax=1000, total=6000, tax_inclusive=True)
    assert (parse_one(encode(payload)).amount, parse_one(encode(payload)).tax) == (Decimal("60.00"), Decimal("10.00"))
    renewal = fixture_json("subscription_payment_success_renewal.json")  # pay-rails/pay @ dd766aa, edited
    renewal["data"]["attributes"].update(subtotal=1000, discount_total=0, tax=200, total=1200)
    assert (parse_one(encode(renewal)).amount, parse_one(encode(renewal)).tax) == (Decimal("12.00"), Decimal("2.00"))


def test_sale_and_refunds_share_one_tax_base(tmp_path: Path) -> None:
    # the case: an order of 100 + 20 VAT; refunds report the cumulative gross refunded_amount
    sale = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    sale["data"]["attributes"].update(subtotal=10000, discount_total=0, tax=2000, total=12000)
    refund = fixture_json("order_refunded_partial.json")  # built, see SOURCES.md
    refund["data"]["attributes"].update(subtotal=10000, discount_total=0, tax=2000, total=12000)
    h = LedgerHarness(tmp_path / "l.db", customer_key=["metadata.user_id", "email"])
    try:
        h.apply(parse_one(encode(sale)))
        assert h.live_amount() == Decimal("100.00")
        refund["data"]["attributes"]["refunded_amount"] = 6000
        h.apply(parse_one(encode(refund)))
        assert h.live_amount() == Decimal("50.00")  # not 40.00
        refund["data"]["attributes"]["refunded_amount"] = 10000
        h.apply(parse_one(encode(refund)))
        assert h.live_amount() == Decimal("16.67")  # 16.67 net is still earned
    finally:
        h.close()


def test_the_old_amount_field_option_is_refused_with_its_replacement() -> None:
    with pytest.raises(ConfigError, match="amount: excluding_tax"):
        parse_config({"endpoints": {"ls": {"provider": "lemonsqueezy", "secret": "s", "amount_field": "subtotal"}}})


def test_currency_exponent_and_case() -> None:
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    payload["data"]["attributes"].update(currency="JPY", total=1200)
    event = parse_one(encode(payload))
    assert (event.amount, event.currency) == (Decimal("1200"), "JPY")
    payload["data"]["attributes"].update(currency="eur", total=1234)
    event = parse_one(encode(payload))
    assert (event.amount, event.currency) == (Decimal("12.34"), "EUR")


def test_custom_data_becomes_string_metadata() -> None:
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    payload["meta"]["custom_data"] = {
        "user_id": 123,
        "vip": True,
        "ratio": 1.5,
        "nested": {"a": 1},
        "list": [1],
        "none": None,
        "code": "abc",
    }
    metadata = parse_one(encode(payload)).customer.metadata
    assert metadata == {"user_id": "123", "vip": "true", "ratio": "1.5", "code": "abc"}


def test_large_integer_ids_stay_exact() -> None:
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    payload["data"]["id"] = 9007199254740993
    payload["data"]["attributes"]["customer_id"] = 9007199254740995
    event = parse_one(encode(payload))
    assert event.transaction_key == "lemonsqueezy:order:9007199254740993"
    assert event.customer.customer_id == "9007199254740995"


@pytest.mark.parametrize("status", ["pending", "failed"])
def test_unpaid_order_is_ignored(status: str) -> None:
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    payload["data"]["attributes"]["status"] = status
    event = parse_one(encode(payload))
    assert event.kind is EventKind.IGNORED
    assert event.reason == f"order status is {status}, not paid"


def test_event_name_falls_back_to_the_header() -> None:
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    del payload["meta"]["event_name"]
    body = encode(payload)
    events = adapter().parse(request(body, {"x-event-name": "order_created"}))
    assert [e.transaction_key for e in events] == ["lemonsqueezy:order:1"]


# --- parse: refunds ---------------------------------------------------------------------------------------


def test_full_order_refund_names_the_sale_key() -> None:
    # built from pay-rails/pay order_created.json @ dd766aa (SOURCES.md)
    event = parse_one(fixture("order_refunded.json"))
    assert event == NormalizedEvent(
        kind=EventKind.REFUND,
        event_type="order_refunded",
        transaction_key="lemonsqueezy:order:1",
        amount=None,
        currency="USD",
        customer=CustomerFacts(
            email="dan@lemonsqueezy.com",
            customer_id="1",
            name="Dan R",
            metadata={"user_id": "123", "campaign_id": "abc"},
        ),
        product_id="1",
        product_type="1",
        test_mode=False,
        occurred_at=datetime(2023, 1, 20, 9, 30, tzinfo=UTC),
        full_refund=True,
        refunded_total=Decimal("58.99"),
        sale_amount=Decimal("58.99"),
        sale_tax=Decimal("0.00"),
    )
    assert event.transaction_key == parse_one(fixture("order_created.json")).transaction_key


def test_partial_order_refund_is_cumulative() -> None:
    # built from pay-rails/pay order_created.json @ dd766aa, shape of the docs' issue-refund response
    event = parse_one(fixture("order_refunded_partial.json"))
    assert event.kind is EventKind.REFUND
    assert event.transaction_key == "lemonsqueezy:order:1"
    assert event.full_refund is False
    assert event.refunded_total == Decimal("10.00")
    assert event.sale_amount == Decimal("58.99")
    assert event.amount is None


def test_refunded_amount_reaching_total_is_full_even_if_status_lags() -> None:
    payload = fixture_json("order_refunded_partial.json")  # built from pay-rails/pay @ dd766aa
    payload["data"]["attributes"]["refunded_amount"] = 5899
    event = parse_one(encode(payload))
    assert event.full_refund is True
    assert event.refunded_total == Decimal("58.99")


def test_order_refund_without_refunded_amount() -> None:
    payload = fixture_json("order_refunded.json")  # built from pay-rails/pay @ dd766aa
    del payload["data"]["attributes"]["refunded_amount"]
    event = parse_one(encode(payload))
    assert (event.full_refund, event.refunded_total) == (True, None)
    payload["data"]["attributes"].update(status="paid", refunded=False)
    event = parse_one(encode(payload))
    assert (event.full_refund, event.refunded_total) == (None, None)


def test_renewal_invoice_refund_names_the_invoice_key() -> None:
    # pay-rails/pay subscription_payment_refunded.json @ dd766aa, billing_reason → renewal (SOURCES.md)
    event = parse_one(fixture("subscription_payment_refunded_renewal.json"))
    sale = parse_one(fixture("subscription_payment_success_renewal.json"))
    assert event.kind is EventKind.REFUND
    assert event.transaction_key == sale.transaction_key == "lemonsqueezy:invoice:2"
    assert event.full_refund is True
    assert event.refunded_total == Decimal("9.99")
    assert event.sale_amount == Decimal("9.99")
    assert event.customer.metadata == {"user_id": "123"}
    assert event.occurred_at == datetime(2023, 2, 18, 12, 16, 24, tzinfo=UTC)


def test_partial_invoice_refund() -> None:
    payload = fixture_json("subscription_payment_refunded_renewal.json")  # pay-rails/pay @ dd766aa, edited
    payload["data"]["attributes"].update(status="partial_refund", refunded=False, refunded_amount=500)
    event = parse_one(encode(payload))
    assert (event.full_refund, event.refunded_total) == (False, Decimal("5.00"))


def test_first_payment_invoice_refund_needs_attention(tmp_path: Path) -> None:
    # pay-rails/pay subscription_payment_refunded.json @ dd766aa, as is (billing_reason initial): the
    # invoice names its subscription, not the order whose key the first payment was booked under
    event = parse_one(fixture("subscription_payment_refunded.json"))
    assert (event.kind, event.transaction_key) == (EventKind.REFUND, None)
    h = LedgerHarness(tmp_path / "l.db", test_mode="deliver")
    try:
        [seen] = h.apply(event)
        assert seen.status == "skipped"
        assert seen.reason is not None and seen.reason.startswith("needs attention: refund of the first payment")
        assert "order_refunded" in seen.reason
    finally:
        h.close()


# --- a first payment's invoice refund, moved onto its order by GET /v1/subscriptions/:id ---------------


@pytest.fixture
def lemon_api() -> Iterator[ProviderApiServer]:
    with ProviderApiServer("lemonsqueezy") as server:
        # subscription 1 began with order 1 (api/subscription.json, SOURCES.md)
        server.put("/v1/subscriptions", "1", fixture_json("api/subscription.json"))
        yield server


def read_with_api(api: ProviderApiServer, body: bytes, **options: Any) -> list[NormalizedEvent]:
    settings = {"api_key": API_KEY, "api_base_url": f"{api.url}/v1", **options}
    lemon = LemonSqueezyAdapter((SECRET,), LemonSqueezyOptions(**settings))
    return asyncio.run(lemon.read(request(body)))


def partial_order_refund() -> bytes:
    # the same 9.99 seen from the order (pay @ dd766aa order_refunded.json, edited as a partial refund)
    payload = fixture_json("order_refunded.json")
    payload["data"]["attributes"].update(status="paid", refunded=False, refunded_amount=999)
    return encode(payload)


def test_first_payment_invoice_refund_is_read_onto_its_order(lemon_api: ProviderApiServer) -> None:
    [event] = read_with_api(lemon_api, fixture("subscription_payment_refunded.json"))
    assert (event.kind, event.transaction_key, event.reason) == (EventKind.REFUND, "lemonsqueezy:order:1", None)
    assert event.refunded_total == Decimal("9.99")
    # the invoice is fully refunded, but whether that is all of the order is the order's to say
    assert (event.full_refund, event.sale_amount) == (None, None)
    assert [(r.path, r.status) for r in lemon_api.requests] == [("/v1/subscriptions/1", 200)]


@pytest.mark.parametrize("invoice_first", [True, False], ids=["invoice-then-order", "order-then-invoice"])
def test_one_refund_seen_from_the_invoice_and_the_order_is_taken_off_once(
    lemon_api: ProviderApiServer, tmp_path: Path, invoice_first: bool
) -> None:
    # the order (pay @ dd766aa order_created.json) is 58.99 with a 49.99 setup fee; its first invoice,
    # 9.99, is refunded: 49.00 stays earned, whichever of the two refund events comes first
    invoice = read_with_api(lemon_api, fixture("subscription_payment_refunded.json"))
    order = parse_one(partial_order_refund())
    h = LedgerHarness(tmp_path / "l.db", test_mode="deliver")
    try:
        h.apply(parse_one(fixture("order_created.json")))
        assert h.live() == {"lemonsqueezy:order:1": Decimal("58.99")}
        for events in [invoice, [order]] if invoice_first else [[order], invoice]:
            h.apply(*events)
            # one live transaction (the re-booked net under the payment's next key) for 49.00
            assert list(h.live().values()) == [Decimal("49.00")]
    finally:
        h.close()


def test_without_the_order_the_invoice_refund_still_needs_attention(lemon_api: ProviderApiServer) -> None:
    # a subscription the API does not know (404)
    payload = fixture_json("subscription_payment_refunded.json")
    payload["data"]["attributes"]["subscription_id"] = 7
    [unknown] = read_with_api(lemon_api, encode(payload))
    # no api_key: the API is not asked
    [no_key] = read_with_api(lemon_api, fixture("subscription_payment_refunded.json"), api_key=None)
    for event in (unknown, no_key):
        assert (event.kind, event.transaction_key) == (EventKind.REFUND, None)
        assert event.reason is not None and event.reason.startswith("needs attention: refund of the first payment")
    assert [(r.path, r.status) for r in lemon_api.requests] == [("/v1/subscriptions/7", 404)]


def test_a_renewal_invoice_refund_needs_no_look_up(lemon_api: ProviderApiServer) -> None:
    [event] = read_with_api(lemon_api, fixture("subscription_payment_refunded_renewal.json"))
    assert event.transaction_key == "lemonsqueezy:invoice:2"
    assert lemon_api.requests == []


@pytest.mark.parametrize("status", [503, 429, 401])
def test_lemon_squeezy_api_trouble_keeps_the_invoice_refund_for_a_later_read(
    lemon_api: ProviderApiServer, status: int
) -> None:
    lemon_api.fail_next(1, status)
    with pytest.raises(ProviderUnavailable):
        read_with_api(lemon_api, fixture("subscription_payment_refunded.json"))
    [event] = read_with_api(lemon_api, fixture("subscription_payment_refunded.json"))
    assert event.transaction_key == "lemonsqueezy:order:1"


def test_plan_change_invoice_refund_names_its_invoice() -> None:
    payload = fixture_json("subscription_payment_refunded_renewal.json")  # pay-rails/pay @ dd766aa, edited
    payload["data"]["attributes"]["billing_reason"] = "updated"
    event = parse_one(encode(payload))
    assert (event.kind, event.transaction_key) == (EventKind.REFUND, "lemonsqueezy:invoice:2")


# --- parse: ignored events -------------------------------------------------------------------------------


def test_subscription_created_is_ignored() -> None:
    event = parse_one(fixture("subscription_created.json"))  # pay-rails/pay @ f58eb8e, as is
    assert event.kind is EventKind.IGNORED
    assert event.event_type == "subscription_created"
    assert event.reason == "subscription start; its first payment is counted by order_created"


def test_recovered_payment_is_ignored_because_success_counts_it() -> None:
    payload = fixture_json("subscription_payment_success_renewal.json")  # pay-rails/pay @ dd766aa, edited
    payload["meta"]["event_name"] = "subscription_payment_recovered"
    event = parse_one(encode(payload))
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and "subscription_payment_success" in event.reason


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("subscription_cancelled", "no money moved"),
        ("license_key_created", "license keys carry no payment"),
        ("affiliate_activated", "event not used by the bridge"),
    ],
)
def test_other_events_are_ignored_with_a_reason(name: str, reason: str) -> None:
    event = parse_one(encode({"meta": {"event_name": name}, "data": {"type": "x", "id": "1"}}))
    assert (event.kind, event.event_type, event.reason) == (EventKind.IGNORED, name, reason)


# --- parse: junk -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b'"order_created"',
        b"{}",
        b'{"meta": []}',
        b'{"meta": {}}',
        b'{"meta": {"event_name": 7}}',
        b'{"meta": {"event_name": "order_created"}}',
        b'{"meta": {"event_name": "order_created"}, "data": []}',
        b'{"meta": {"event_name": "order_created"}, "data": {"type": "orders", "id": "1"}}',
        b"[" * 100_000,
    ],
)
def test_unreadable_bodies_raise_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("total", None, "missing data.attributes.total"),
        ("total", "5899", "not an amount in cents"),
        ("total", True, "not an amount in cents"),
        ("total", 58.99, "not a whole number"),
        ("total", -1, "negative"),
        ("currency", None, "missing data.attributes.currency"),
        ("currency", "ZZZ", "unknown currency"),
        ("currency", "XXX", "unknown currency"),
    ],
)
def test_bad_amounts_and_currencies_raise_payload_error(field: str, value: Any, message: str) -> None:
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    payload["data"]["attributes"][field] = value
    with pytest.raises(PayloadError, match=message):
        adapter().parse(request(encode(payload)))


def test_non_finite_number_raises_payload_error() -> None:
    body = fixture("order_created.json").replace(b'"total": 5899', b'"total": NaN')
    with pytest.raises(PayloadError, match="not JSON"):
        adapter().parse(request(body))


@pytest.mark.parametrize("value", [None, "", True, {"id": 1}])
def test_missing_order_id_raises_payload_error(value: Any) -> None:
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    payload["data"]["id"] = value
    with pytest.raises(PayloadError, match=r"missing data\.id"):
        adapter().parse(request(encode(payload)))


def test_wrong_object_type_raises_payload_error() -> None:
    payload = fixture_json("subscription_payment_success_renewal.json")  # pay-rails/pay @ dd766aa, edited
    payload["data"]["type"] = "orders"
    with pytest.raises(PayloadError, match=r"data\.type"):
        adapter().parse(request(encode(payload)))


@pytest.mark.parametrize("reason", [None, "proration"])
def test_unknown_billing_reason_is_kept_for_replay(reason: str | None) -> None:
    payload = fixture_json("subscription_payment_success_renewal.json")  # pay-rails/pay @ dd766aa, edited
    payload["data"]["attributes"]["billing_reason"] = reason
    with pytest.raises(PayloadError, match="billing_reason"):
        adapter().parse(request(encode(payload)))


def test_bad_timestamp_is_no_error() -> None:
    payload = fixture_json("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    payload["data"]["attributes"]["created_at"] = "yesterday"
    assert parse_one(encode(payload)).occurred_at is None


# --- delivery id -------------------------------------------------------------------------------------------


def delivery_id(body: bytes) -> str:
    return adapter().delivery_id(request(body))


def test_delivery_id_from_event_type_and_id() -> None:
    assert delivery_id(fixture("order_created.json")) == "order_created:orders:1"  # pay @ dd766aa
    assert delivery_id(fixture("subscription_created.json")) == "subscription_created:subscriptions:1"
    assert (
        delivery_id(fixture("subscription_payment_success_renewal.json"))
        == "subscription_payment_success:subscription-invoices:2"
    )


def test_delivery_id_of_refunds_carries_the_cumulative_amount() -> None:
    # each partial refund of one order is its own delivery; a resend of one is not
    full = delivery_id(fixture("order_refunded.json"))  # built from pay @ dd766aa
    partial = delivery_id(fixture("order_refunded_partial.json"))  # built from pay @ dd766aa
    assert full == "order_refunded:orders:1:5899"
    assert partial == "order_refunded:orders:1:1000"
    assert (
        delivery_id(fixture("subscription_payment_refunded_renewal.json"))
        == "subscription_payment_refunded:subscription-invoices:2:999"
    )


def test_delivery_id_separates_test_mode() -> None:
    assert delivery_id(fixture("order_created_test_mode.json")) == "order_created:orders:2:test"


def test_delivery_id_ignores_formatting_of_a_resend() -> None:
    body = fixture("order_created.json")  # pay-rails/pay @ dd766aa, edited (SOURCES.md)
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert delivery_id(compact) == delivery_id(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff",
        b"[1]",
        b"{}",
        b'{"meta": "x", "data": {}}',
        b'{"meta": {"event_name": 5}, "data": {"type": "orders", "id": "1"}}',
        b'{"meta": {"event_name": "order_created"}, "data": {"type": "orders"}}',
        b'{"meta": {"event_name": "order_created"}, "data": {"type": "orders", "id": {"x": 1}}}',
        b'{"meta": {"event_name": "order_created"}, "data": {"type": "orders", "id": NaN}}',
        b"[" * 100_000,
    ],
)
def test_delivery_id_falls_back_to_body_hash(body: bytes) -> None:
    assert delivery_id(body) == body_hash(body)


def test_an_invoice_refund_read_before_its_order_is_measured_against_the_order(
    lemon_api: ProviderApiServer, tmp_path: Path
) -> None:
    # webhooks arrive in any order: the 9.99 invoice must not stand in for the 58.99 order it belongs to
    invoice = read_with_api(lemon_api, fixture("subscription_payment_refunded.json"))
    h = LedgerHarness(tmp_path / "l.db", test_mode="deliver")
    try:
        h.apply(*invoice)
        h.apply(parse_one(fixture("order_created.json")))
        assert list(h.live().values()) == [Decimal("49.00")]
    finally:
        h.close()


# --- discount codes (issue 15): an order names no code; its discount redemption does ---------------


def _discounted(total: int = 100, event: str = "order_created") -> bytes:
    payload = fixture_json("order_created.json")
    payload["meta"]["event_name"] = event
    payload["data"]["attributes"]["discount_total"] = total
    return encode(payload)


def _read(lemon: LemonSqueezyAdapter, body: bytes) -> list[NormalizedEvent]:
    return read_once(lemon, request(body))


@pytest.fixture
def redemption_api() -> Iterator[ProviderApiServer]:
    with ProviderApiServer("lemonsqueezy") as server:
        server.add("/v1/discount-redemptions", fixture_json("api/discount_redemption.json"))
        other = fixture_json("api/discount_redemption.json")
        other["id"], other["attributes"]["order_id"], other["attributes"]["discount_code"] = "2", 2, "OTHER"
        server.add("/v1/discount-redemptions", other)
        yield server


def _with_key(server: ProviderApiServer) -> LemonSqueezyAdapter:
    options = LemonSqueezyOptions(api_key=server.api_key, api_base_url=f"{server.url}/v1")
    return LemonSqueezyAdapter((SECRET,), options)


def test_without_an_api_key_a_discounted_order_says_its_code_is_unknown() -> None:
    [sale] = _read(adapter(), _discounted())
    assert (sale.kind, sale.coupon_code, sale.reason) == (EventKind.SALE, None, CODE_UNKNOWN)
    assert parse_one(fixture("order_created.json")).reason is None


def test_with_an_api_key_the_code_is_read_from_the_orders_redemption(redemption_api: ProviderApiServer) -> None:
    [sale] = _read(_with_key(redemption_api), _discounted())
    assert (sale.kind, sale.coupon_code, sale.reason) == (EventKind.SALE, "10PERC", None)
    [asked] = redemption_api.requests
    assert (asked.path, asked.query, asked.status) == ("/v1/discount-redemptions", {"filter[order_id]": "1"}, 200)


def test_orders_without_a_discount_and_other_events_ask_nothing(redemption_api: ProviderApiServer) -> None:
    _read(_with_key(redemption_api), _discounted(0))
    _read(_with_key(redemption_api), _discounted(100, event="order_refunded"))
    assert redemption_api.requests == []


def test_an_order_without_a_redemption_keeps_the_sale_without_a_code() -> None:
    with ProviderApiServer("lemonsqueezy") as empty:
        [sale] = _read(_with_key(empty), _discounted())
    assert (sale.kind, sale.transaction_key, sale.coupon_code) == (EventKind.SALE, "lemonsqueezy:order:1", None)
    assert sale.reason == CODE_NOT_REDEEMED


@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_a_failed_look_up_leaves_the_call_to_be_read_again(redemption_api: ProviderApiServer, status: int) -> None:
    redemption_api.fail_next(1, status=status)
    with pytest.raises(ProviderUnavailable, match=f"Lemon Squeezy API .*{status}"):
        _read(_with_key(redemption_api), _discounted())
