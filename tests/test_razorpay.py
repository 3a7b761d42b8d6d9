"""Razorpay adapter: the SDKs' signature vectors first, then parsing of Razorpay's sample payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.events import DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import PayloadError, SignatureError, WebhookRequest, body_hash
from providers.razorpay import RazorpayAdapter, RazorpayOptions

FIXTURES = Path(__file__).parent / "fixtures" / "razorpay"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "rzp-old-webhook-secret"
NOW = 1_754_285_445.0

SALE_KEY = "razorpay:pay:pay_DESlfW9H8K9uqM"
MAGENTO_KEY = "razorpay:pay:pay_IilTQTf37sXXNX"
MAGENTO_NOTES = {"merchant_order_id": "", "merchant_quote_id": "36"}


def adapter(*secrets: str, **options: Any) -> RazorpayAdapter:
    return RazorpayAdapter(secrets or (SECRET,), RazorpayOptions(**options))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def edited(name: str, edit: Any) -> bytes:
    payload = json.loads(fixture(name))
    edit(payload)
    return json.dumps(payload).encode()


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    return request(body, adapter(secret).sign(body, secret, NOW).headers)


def parse_one(body: bytes, **options: Any) -> NormalizedEvent:
    events = adapter(**options).parse(request(body))
    assert len(events) == 1
    return events[0]


# --- signature: published vectors -------------------------------------------------------------


def test_node_and_java_sdk_vector() -> None:
    # razorpay/razorpay-node test/utils/razorpay-utils.spec.js (validateWebhookSignature), same in
    # razorpay/razorpay-java src/test/java/com/razorpay/UtilsTest.java
    body = b'{"a":1,"b":2,"c":{"d":3}}'
    signature = "2fe04e22977002e6c7cb553adab8b460cb9e2a4970d5953cb27a8472752e3bbc"
    adapter("123456").verify(request(body, {"x-razorpay-signature": signature}), NOW)
    assert adapter("123456").sign(body, "123456", NOW).headers["x-razorpay-signature"] == signature


def test_python_sdk_vector_over_the_whole_file() -> None:
    # razorpay/razorpay-python@cd8b9b5e tests/mocks/fake_payment_authorized_webhook.json, signed in
    # tests/test_client_utility.py::test_verify_webhook_signature with the test client's "key_secret"
    body = fixture("payment_authorized.json")
    assert len(body) == 971 and body.endswith(b"}\n")
    assert hashlib.sha256(body).hexdigest() == "9cc0236491299f34a154292eaed46d94b010f44b22095c034f884ca6a1862bef"
    signature = "d60e67fd884556c045e9be7dad57903e33efc7172c17c6e3ef77db42d2b366e9"
    adapter("key_secret").verify(request(body, {"x-razorpay-signature": signature}), NOW)


def test_python_sdk_vector_without_the_trailing_newline_is_rejected() -> None:
    # raw bytes matter: the same JSON minus its final newline has another HMAC (computed, not published)
    body = fixture("payment_authorized.json")[:-1]
    assert hmac.new(b"key_secret", body, hashlib.sha256).hexdigest() == (
        "0971cde1d9216765d9aa72c766aef4a913fedfd2d36cc05cbca5de1ef90c12e4"
    )
    official = "d60e67fd884556c045e9be7dad57903e33efc7172c17c6e3ef77db42d2b366e9"
    with pytest.raises(SignatureError, match="does not match"):
        adapter("key_secret").verify(request(body, {"x-razorpay-signature": official}), NOW)


# --- signature: round trip, failures, rotation -------------------------------------------------


def test_sign_is_hex_hmac_of_the_raw_body_with_the_secret_as_typed() -> None:
    body = fixture("payment_captured.json")
    headers = adapter().sign(body, SECRET, NOW).headers
    assert headers["x-razorpay-signature"] == hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-razorpay-event-id"].startswith("evt_")
    assert adapter().sign(body, SECRET, NOW + 60).headers == headers  # no timestamp in the scheme


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "e2e.json"))
def test_sign_verify_round_trip(name: str) -> None:
    adapter().verify(signed(fixture(name)), NOW)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        adapter("another-secret").verify(signed(fixture("payment_captured.json")), NOW)


def test_missing_header_is_rejected() -> None:
    with pytest.raises(SignatureError, match="missing x-razorpay-signature"):
        adapter().verify(request(fixture("payment_captured.json")), NOW)


def test_tampered_body_is_rejected() -> None:
    genuine = signed(fixture("payment_captured.json"))
    body = genuine.body.replace(b'"amount": 100,', b'"amount": 10000,')
    assert body != genuine.body
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(body, dict(genuine.headers)), NOW)


@pytest.mark.parametrize("value", ["not-hex", "sha256=" + "0" * 64, "zz" * 32])
def test_malformed_header_is_rejected(value: str) -> None:
    with pytest.raises(SignatureError, match="malformed x-razorpay-signature"):
        adapter().verify(request(b"{}", {"x-razorpay-signature": value}), NOW)


def test_truncated_signature_is_a_mismatch() -> None:
    headers = dict(signed(b"{}").headers)
    headers["x-razorpay-signature"] = headers["x-razorpay-signature"][:-2]
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(b"{}", headers), NOW)


def test_upper_case_hex_is_accepted() -> None:
    headers = {"x-razorpay-signature": signed(b"{}").headers["x-razorpay-signature"].upper()}
    adapter().verify(request(b"{}", headers), NOW)


def test_rotation_accepts_old_and_new_secret() -> None:
    # retries of events sent before a secret change stay signed with the old secret (Razorpay FAQ)
    both = adapter(SECRET, OLD_SECRET)
    body = fixture("order_paid.json")
    both.verify(signed(body, SECRET), NOW)
    both.verify(signed(body, OLD_SECRET), NOW)
    with pytest.raises(SignatureError):
        adapter(SECRET).verify(signed(body, OLD_SECRET), NOW)


def test_no_timestamp_so_no_tolerance() -> None:
    genuine = signed(fixture("payment_captured.json"))
    adapter().verify(genuine, NOW + 30 * 86_400)


def test_registered_under_its_name() -> None:
    assert get_adapter_class("razorpay") is RazorpayAdapter


def test_options_default_and_forbid_unknown_keys() -> None:
    assert RazorpayOptions().sandbox is False
    with pytest.raises(ValidationError):
        RazorpayOptions.model_validate({"tolerance_seconds": 60})


# --- parse: sales ---------------------------------------------------------------------------


def test_payment_captured_is_a_sale() -> None:
    # razorpay/markdown-docs webhooks/payments.md "Payment Captured" (Netbanking), notes edited (SOURCES.md)
    event = parse_one(fixture("payment_captured.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "payment.captured"
    assert event.transaction_key == SALE_KEY
    assert event.amount == Decimal("1.00") and str(event.amount) == "1.00"
    assert event.currency == "INR"
    assert event.customer.email == "gaurav.kumar@example.com"
    assert event.customer.customer_id is None
    assert event.customer.external_id is None
    assert dict(event.customer.metadata) == {"user_id": "usr_1001"}
    assert event.product_id is None and event.product_type is None
    assert event.test_mode is False
    assert event.occurred_at == datetime(2019, 9, 5, 9, 10, 6, tzinfo=UTC)


def test_empty_notes_array_is_empty_metadata() -> None:
    # razorpay/markdown-docs webhooks/payments.md "Payment Captured" (Card): "notes": []
    event = parse_one(fixture("payment_captured_card.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == "razorpay:pay:pay_DESp9bgForNoUd"
    assert dict(event.customer.metadata) == {}


def test_order_paid_is_a_sale_of_its_payment() -> None:
    # razorpay/markdown-docs payments/subscriptions/plugins/magento/webhook-events.md "order.paid"
    event = parse_one(fixture("order_paid.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == MAGENTO_KEY
    assert event.amount == Decimal("60.00")
    assert event.currency == "INR"
    assert event.customer.email == "roni_cost@example.com"
    assert event.customer.customer_id == "cust_IilSzuBJCNvrsu"
    # order.notes is [] here; the payment's notes are kept, the empty string included
    assert dict(event.customer.metadata) == MAGENTO_NOTES
    assert event.product_type is None


def test_subscription_charged_is_a_sale_of_its_payment() -> None:
    # same Magento page, "subscription.charged" (note its "captured": "1")
    event = parse_one(fixture("subscription_charged.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == MAGENTO_KEY
    assert event.amount == Decimal("60.00")
    assert event.product_id == "plan_IilSFBnjkbmBuP"
    assert event.product_type == "subscription"
    assert event.customer.customer_id == "cust_IilSzuBJCNvrsu"
    # subscription notes are merged under the payment's own notes
    assert dict(event.customer.metadata) == {
        "source": "magento-subscription",
        "magento_quote_id": "36",
        **MAGENTO_NOTES,
    }


def test_one_payment_announced_three_times_is_one_key() -> None:
    # payment.captured, order.paid and subscription.charged of pay_IilTQTf37sXXNX: one Partnero sale
    captured = edited(
        "order_paid.json",
        lambda p: (p.update(event="payment.captured", contains=["payment"]), p["payload"].pop("order")),
    )
    events = [
        parse_one(captured),
        parse_one(fixture("order_paid.json")),
        parse_one(fixture("subscription_charged.json")),
    ]
    assert [e.kind for e in events] == [EventKind.SALE] * 3
    assert {e.transaction_key for e in events} == {MAGENTO_KEY}
    assert {e.amount for e in events} == {Decimal("60.00")}


def test_order_and_subscription_notes_fill_in_what_the_payment_lacks() -> None:
    def notes_on_order_only(payload: dict[str, Any]) -> None:
        payload["payload"]["payment"]["entity"]["notes"] = []
        payload["payload"]["order"]["entity"]["notes"] = {"user_id": "usr_42"}

    event = parse_one(edited("order_paid.json", notes_on_order_only))
    assert dict(event.customer.metadata) == {"user_id": "usr_42"}


def test_payment_notes_win_over_order_notes() -> None:
    def both(payload: dict[str, Any]) -> None:
        payload["payload"]["payment"]["entity"]["notes"] = {"user_id": "from_payment"}
        payload["payload"]["order"]["entity"]["notes"] = {"user_id": "from_order", "plan": "pro"}

    event = parse_one(edited("order_paid.json", both))
    assert dict(event.customer.metadata) == {"user_id": "from_payment", "plan": "pro"}


def test_notes_scalars_are_stringified_and_nested_values_skipped() -> None:
    def odd_notes(payload: dict[str, Any]) -> None:
        payload["payload"]["payment"]["entity"]["notes"] = {"n": 7, "b": True, "x": None, "d": {"a": 1}, "l": [1]}

    event = parse_one(edited("payment_captured.json", odd_notes))
    assert dict(event.customer.metadata) == {"n": "7", "b": "true"}


@pytest.mark.parametrize("event_type", ["payment_link.paid", "invoice.paid", "qr_code.credited"])
def test_other_paid_objects_carrying_the_payment_share_its_key(event_type: str) -> None:
    event = parse_one(edited("order_paid.json", lambda p: p.update(event=event_type)))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == MAGENTO_KEY


@pytest.mark.parametrize(("currency", "minor", "expected"), [("JPY", 500, "500"), ("KWD", 1234, "1.234")])
def test_minor_units_use_the_currency_exponent(currency: str, minor: int, expected: str) -> None:
    def change(payload: dict[str, Any]) -> None:
        payload["payload"]["payment"]["entity"].update(currency=currency, amount=minor)

    event = parse_one(edited("payment_captured.json", change))
    assert event.currency == currency
    assert str(event.amount) == expected


def test_sandbox_option_marks_events_test_mode() -> None:
    assert parse_one(fixture("payment_captured.json"), sandbox=True).test_mode is True
    assert parse_one(fixture("refund_processed.json"), sandbox=True).test_mode is True


# --- parse: refunds -----------------------------------------------------------------------------


def test_full_refund() -> None:
    # built from the refund shape of a real delivery, aligned with payment_captured.json (SOURCES.md)
    event = parse_one(fixture("refund_processed.json"))
    assert event.kind is EventKind.REFUND
    assert event.event_type == "refund.processed"
    assert event.transaction_key == SALE_KEY
    assert event.amount == Decimal("1.00")
    assert event.currency == "INR"
    assert event.refund_id == "rfnd_DESmxLhs4KGBKJ"
    assert event.refunded_total == Decimal("1.00")
    assert event.sale_amount == Decimal("1.00")
    assert event.full_refund is True
    assert event.customer.email == "gaurav.kumar@example.com"
    assert dict(event.customer.metadata) == {"user_id": "usr_1001"}
    assert event.test_mode is False


def test_refund_shares_the_key_of_its_sale() -> None:
    assert (
        parse_one(fixture("refund_processed.json")).transaction_key
        == parse_one(fixture("payment_captured.json")).transaction_key
    )


def test_partial_refund_carries_this_refund_and_the_cumulative_total() -> None:
    event = parse_one(fixture("refund_processed_partial.json"))
    assert event.kind is EventKind.REFUND
    assert event.transaction_key == MAGENTO_KEY
    assert event.amount == Decimal("20.00")
    assert event.refund_id == "rfnd_IilZhvYM4TzSeF"
    assert event.refunded_total == Decimal("20.00")
    assert event.sale_amount == Decimal("60.00")
    assert event.full_refund is False


def test_pending_refund_created_is_ignored() -> None:
    event = parse_one(fixture("refund_created.json"))
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and "refund.processed" in event.reason


def test_refund_created_already_processed_counts_like_refund_processed() -> None:
    # instant refunds can be created processed; both events then name the same refund id
    created = parse_one(
        edited("refund_created.json", lambda p: p["payload"]["refund"]["entity"].update(status="processed"))
    )
    processed = parse_one(fixture("refund_processed_partial.json"))
    assert created.kind is EventKind.REFUND
    assert (created.transaction_key, created.amount, created.refund_id) == (
        processed.transaction_key,
        processed.amount,
        processed.refund_id,
    )


def test_refund_without_payment_entity_still_names_the_sale() -> None:
    event = parse_one(edited("refund_processed.json", lambda p: p["payload"].pop("payment")))
    assert event.transaction_key == SALE_KEY
    assert event.amount == Decimal("1.00")
    assert event.refund_id == "rfnd_DESmxLhs4KGBKJ"
    assert event.refunded_total is None and event.sale_amount is None and event.full_refund is None
    assert event.customer.email is None


# --- parse: disputes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "state", "key", "amount"),
    [
        # razorpay/markdown-docs webhooks/disputes.md
        ("dispute_created.json", DisputeState.OPENED, "razorpay:pay:pay_EFtmUsbwpXwBHI", Decimal("390.00")),
        ("dispute_lost.json", DisputeState.LOST, "razorpay:pay:pay_EFtmUsbwpXwBHI", Decimal("390.00")),
        ("dispute_won.json", DisputeState.WON, "razorpay:pay:pay_EsIStomuIwFQ6U", Decimal("1300.00")),
    ],
)
def test_disputes(name: str, state: DisputeState, key: str, amount: Decimal) -> None:
    event = parse_one(fixture(name))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is state
    assert event.transaction_key == key
    assert event.amount == amount
    assert event.currency == "INR"
    assert event.customer.email == "gaurav.kumar@example.com"
    assert event.reason == "dispute phase chargeback"


def test_dispute_outcome_is_reported() -> None:
    assert RazorpayAdapter.reports_dispute_outcome is True


# --- parse: ignored events ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "reason_part"),
    [
        ("payment.authorized", "not captured"),
        ("payment.failed", "did not succeed"),
        ("refund.failed", "did not go through"),
        ("payment.dispute.closed", "sale stands"),
        ("payment.dispute.under_review", "not settled"),
        ("subscription.activated", "subscription lifecycle"),
        ("subscription.authenticated", "subscription lifecycle"),
        ("payment.downtime.started", "downtime"),
        ("payout.processed", "payout"),
        ("account.app.authorization_revoked", "not used"),
    ],
)
def test_other_events_are_ignored_with_a_reason(event_type: str, reason_part: str) -> None:
    event = parse_one(json.dumps({"entity": "event", "event": event_type, "payload": {}}).encode())
    assert event.kind is EventKind.IGNORED
    assert event.event_type == event_type
    assert event.transaction_key is None
    assert event.reason is not None and reason_part in event.reason


def test_sdk_payment_authorized_fixture_is_ignored() -> None:
    event = parse_one(fixture("payment_authorized.json"))
    assert event.kind is EventKind.IGNORED and event.event_type == "payment.authorized"


# --- parse: junk --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[]", b'"payment.captured"', b"{}", b'{"event": 5}', b"[" * 100_000],
)
def test_unreadable_bodies_raise_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


def _set(path: tuple[str, ...], value: Any) -> Any:
    def edit(payload: dict[str, Any]) -> None:
        target = payload
        for step in path[:-1]:
            target = target[step]
        if value is _DELETE:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value

    return edit


_DELETE = object()
PAYMENT = ("payload", "payment", "entity")
REFUND = ("payload", "refund", "entity")


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("payment_captured.json", _set(("payload",), _DELETE)),
        ("payment_captured.json", _set(("payload", "payment"), _DELETE)),
        ("payment_captured.json", _set((*PAYMENT, "id"), _DELETE)),
        ("payment_captured.json", _set((*PAYMENT, "amount"), "100")),
        ("payment_captured.json", _set((*PAYMENT, "amount"), 100.5)),
        ("payment_captured.json", _set((*PAYMENT, "amount"), True)),
        ("payment_captured.json", _set((*PAYMENT, "amount"), 10**30)),
        ("payment_captured.json", _set((*PAYMENT, "amount"), -1)),
        ("refund_processed.json", _set((*REFUND, "amount"), -100)),
        ("payment_captured.json", _set((*PAYMENT, "currency"), None)),
        ("payment_captured.json", _set((*PAYMENT, "currency"), "RUPEES")),
        ("refund_processed.json", _set(("payload", "refund"), _DELETE)),
        ("refund_processed.json", _set((*REFUND, "amount"), None)),
        ("refund_processed.json", _set((*REFUND, "currency"), 356)),
        ("refund_processed.json", _set((*PAYMENT, "amount_refunded"), "100")),
        ("dispute_lost.json", _set(("payload", "dispute"), _DELETE)),
    ],
)
def test_events_acted_on_with_bad_fields_raise_payload_error(name: str, edit: Any) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(edited(name, edit)))


def test_refund_naming_no_payment_raises_payload_error() -> None:
    def orphan(payload: dict[str, Any]) -> None:
        payload["payload"]["refund"]["entity"].pop("payment_id")
        payload["payload"].pop("payment")

    with pytest.raises(PayloadError, match="payment_id"):
        adapter().parse(request(edited("refund_processed.json", orphan)))


@pytest.mark.parametrize("amount", [b"1e999999999", b"-1e400", b"1E+30"])
def test_absurd_numbers_raise_payload_error(amount: bytes) -> None:
    body = fixture("payment_captured.json").replace(b'"amount": 100,', b'"amount": ' + amount + b",")
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


# --- delivery id ----------------------------------------------------------------------------


def test_delivery_id_is_the_event_id_header() -> None:
    req = request(b"{}", {"x-razorpay-event-id": "JhxzI8dKiHHMyW"})
    assert adapter().delivery_id(req) == "JhxzI8dKiHHMyW"


def test_signed_requests_carry_a_stable_event_id() -> None:
    body = fixture("payment_captured.json")
    first, again = adapter().delivery_id(signed(body)), adapter().delivery_id(signed(body))
    assert first == again != adapter().delivery_id(signed(fixture("order_paid.json")))


@pytest.mark.parametrize("body", [b"", b"\xff junk", b"{}"])
def test_delivery_id_falls_back_to_the_body_hash(body: bytes) -> None:
    assert adapter().delivery_id(request(body)) == body_hash(body)
    assert adapter().delivery_id(request(body, {"x-razorpay-event-id": "  "})) == body_hash(body)
