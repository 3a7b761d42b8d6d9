"""Whop adapter: raw-key Standard Webhooks and legacy vectors first, then parsing of Whop's documented payloads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from pydantic import ValidationError

from bridge.events import DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import PayloadError, SignatureError, WebhookRequest, body_hash
from providers.whop import WhopAdapter, WhopOptions
from tests.ledger_kit import LedgerHarness

FIXTURES = Path(__file__).parent / "fixtures" / "whop"
SECRET = "ws_3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"
OLD_SECRET = "ws_0000000000000000000000000000000000000000000000000000000000000000"
NOW = 1_735_689_600.0

# Standard Webhooks sign-vector inputs: standard-webhooks/standard-webhooks@b2fa7b8719fb75d326b591077f5d1b385cfcdfae
# libraries/python/tests/test_webhooks.py::test_sign_function
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
# computed with Whop's derivation (key = UTF-8 of the whole secret), reference sheet whop.md; not published by Whop
RAW_KEY_SIGNATURE = "v1,TcxlhK9b6UD6iVI1ZU2tTqp8PEVfYRseNNfa6b+LcUg="
SPEC_KEY_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SALE_KEY = "whop:pay:pay_xxxxxxxxxxxxxx"


def adapter(*secrets: str, **options: Any) -> WhopAdapter:
    return WhopAdapter(secrets or (SECRET,), WhopOptions(**options))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def edited(name: str, edit: Any) -> bytes:
    # test-side only: Python floats re-serialise to their shortest repr ("6.9"), the text Whop sends
    payload = json.loads(fixture(name))
    edit(payload)
    return json.dumps(payload).encode()


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def signed(body: bytes, secret: str = SECRET, now: float = NOW, scheme: str = "standard") -> WebhookRequest:
    return request(body, adapter(secret, scheme=scheme).sign(body, secret, now).headers)


def legacy_header(body: bytes, secret: str = SECRET, timestamp: int = int(NOW)) -> str:
    # whopio/whop-sdk-ts packages/api/src/webhooks.ts: hex HMAC-SHA256 of "<t>.<body>", key = UTF-8 of the secret
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def parse_one(body: bytes, **options: Any) -> NormalizedEvent:
    events = adapter(**options).parse(request(body))
    assert len(events) == 1
    return events[0]


def vector_headers(signature: str) -> dict[str, str]:
    return {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP), "webhook-signature": signature}


# --- signature: vectors ---------------------------------------------------------------------


def test_raw_key_vector_verifies() -> None:
    adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers(RAW_KEY_SIGNATURE)), now=VECTOR_TIMESTAMP)


def test_raw_key_vector_is_what_sign_produces() -> None:
    headers = adapter(VECTOR_SECRET).sign(VECTOR_BODY, VECTOR_SECRET, VECTOR_TIMESTAMP).headers
    # the id is ours; re-sign the vector's id to compare the signature itself
    assert headers["webhook-timestamp"] == str(VECTOR_TIMESTAMP)
    key = VECTOR_SECRET.encode()
    signed_bytes = f"{VECTOR_ID}.{VECTOR_TIMESTAMP}.".encode() + VECTOR_BODY
    assert "v1," + base64.b64encode(hmac.new(key, signed_bytes, hashlib.sha256).digest()).decode() == RAW_KEY_SIGNATURE


def test_spec_key_signature_of_the_same_inputs_is_rejected() -> None:
    # Whop does not base64-decode the secret: the spec derivation's signature must fail
    with pytest.raises(SignatureError, match="does not match"):
        adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers(SPEC_KEY_SIGNATURE)), now=VECTOR_TIMESTAMP)


def test_multiple_signatures_any_v1_entry_may_match() -> None:
    header = f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc {RAW_KEY_SIGNATURE} v1,AAAA"
    adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers(header)), now=VECTOR_TIMESTAMP)


def test_sdk_unwrap_case_secret_with_newline() -> None:
    # whopio/whopsdk-python tests/api_resources/test_webhooks.py::test_method_unwrap signs with key bytes
    # b"secret\n" (configured there as whsec_c2VjcmV0Cg==); the dashboard secret is then "secret\n"
    body = fixture("payment_succeeded.json")
    now = time.time()
    stamp = datetime.fromtimestamp(int(now), tz=UTC)
    signature = standardwebhooks.Webhook(b"secret\n").sign(msg_id="1", timestamp=stamp, data=body.decode())
    headers = {"webhook-id": "1", "webhook-timestamp": str(int(now)), "webhook-signature": signature}
    adapter("secret\n").verify(request(body, headers), now)
    with pytest.raises(SignatureError):
        adapter("whsec_c2VjcmV0Cg==").verify(request(body, headers), now)


def test_sign_agrees_with_the_standardwebhooks_library_given_the_base64_wrapped_key() -> None:
    # what Whop's TypeScript SDK does: webhookKey = btoa(secret), then Standard Webhooks verify
    body = fixture("payment_succeeded.json")
    now = time.time()
    headers = adapter().sign(body, SECRET, now).headers
    wrapped = base64.b64encode(SECRET.encode()).decode()
    standardwebhooks.Webhook(wrapped).verify(body, headers)  # raises on mismatch


def test_legacy_header_is_hex_hmac_of_timestamp_dot_body() -> None:
    body = fixture("payment_succeeded_legacy.json")
    headers = adapter(scheme="legacy").sign(body, SECRET, NOW).headers
    assert headers == {"x-whop-signature": legacy_header(body)}
    adapter(scheme="legacy").verify(request(body, headers), NOW)


# --- signature: round trip, failures, rotation, tolerance -------------------------------------


@pytest.mark.parametrize("scheme", ["standard", "legacy", "auto"])
@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "e2e.json"))
def test_sign_verify_round_trip(name: str, scheme: str) -> None:
    adapter(scheme=scheme).verify(signed(fixture(name), scheme=scheme), NOW)


def test_standard_sign_headers() -> None:
    headers = adapter().sign(fixture("payment_succeeded.json"), SECRET, NOW).headers
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"].startswith("msg_") and "." not in headers["webhook-id"]
    assert headers["webhook-timestamp"] == str(int(NOW))


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        adapter(OLD_SECRET).verify(signed(fixture("payment_succeeded.json")), NOW)


def test_tampered_body_is_rejected() -> None:
    genuine = signed(fixture("payment_succeeded.json"))
    body = genuine.body.replace(b'"total": 19.99', b'"total": 1999.99')
    assert body != genuine.body
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(body, dict(genuine.headers)), NOW)


def test_legacy_tampered_body_is_rejected() -> None:
    body = fixture("payment_succeeded_legacy.json")
    headers = {"x-whop-signature": legacy_header(body)}
    with pytest.raises(SignatureError, match="x-whop-signature does not match"):
        adapter(scheme="legacy").verify(request(body + b" ", headers), NOW)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_standard_header_is_rejected(header: str) -> None:
    headers = dict(signed(fixture("payment_succeeded.json")).headers)
    del headers[header]
    with pytest.raises(SignatureError, match=f"missing {header}"):
        adapter().verify(request(fixture("payment_succeeded.json"), headers), NOW)


def test_missing_legacy_header_is_rejected() -> None:
    with pytest.raises(SignatureError, match="missing x-whop-signature"):
        adapter(scheme="legacy").verify(request(fixture("payment_succeeded_legacy.json")), NOW)


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "t=,v1=00",
        "t=abc,v1=" + "0" * 64,
        "t=²,v1=" + "0" * 64,
        "t=" + "9" * 400 + ",v1=" + "0" * 64,
        f"t={int(NOW)}",
        f"t={int(NOW)},v1=nothex",
        f"t={int(NOW)},v0=" + "0" * 64,
    ],
)
def test_malformed_legacy_header_is_rejected(value: str) -> None:
    with pytest.raises(SignatureError):
        adapter(scheme="legacy").verify(request(b"{}", {"x-whop-signature": value}), NOW)


@pytest.mark.parametrize("value", ["garbage", "v1,", "v1,not*base64", SPEC_KEY_SIGNATURE.replace("v1", "v2")])
def test_malformed_standard_signature_is_rejected(value: str) -> None:
    headers = {**signed(fixture("payment_succeeded.json")).headers, "webhook-signature": value}
    with pytest.raises(SignatureError):
        adapter().verify(request(fixture("payment_succeeded.json"), headers), NOW)


def test_standard_endpoint_refuses_legacy_headers_and_vice_versa() -> None:
    body = fixture("payment_succeeded.json")
    with pytest.raises(SignatureError, match="missing webhook-id"):
        adapter().verify(request(body, {"x-whop-signature": legacy_header(body)}), NOW)
    with pytest.raises(SignatureError, match="missing x-whop-signature"):
        adapter(scheme="legacy").verify(signed(body), NOW)


def test_auto_accepts_either_header_set() -> None:
    body = fixture("payment_succeeded.json")
    auto = adapter(scheme="auto")
    auto.verify(signed(body), NOW)
    auto.verify(request(body, {"x-whop-signature": legacy_header(body)}), NOW)
    # both sets sent, the standard one stale: the genuine legacy one is enough
    both = {**signed(body, now=NOW - 3600).headers, "x-whop-signature": legacy_header(body)}
    auto.verify(request(body, both), NOW)
    with pytest.raises(SignatureError, match="missing webhook-id"):
        auto.verify(request(body), NOW)
    with pytest.raises(SignatureError):
        auto.verify(request(body, {"x-whop-signature": legacy_header(body, OLD_SECRET)}), NOW)


@pytest.mark.parametrize("scheme", ["standard", "legacy"])
def test_rotation_either_secret_verifies(scheme: str) -> None:
    both = adapter(SECRET, OLD_SECRET, scheme=scheme)
    body = fixture("payment_succeeded.json")
    both.verify(signed(body, SECRET, scheme=scheme), NOW)
    both.verify(signed(body, OLD_SECRET, scheme=scheme), NOW)


def test_legacy_header_with_old_and_new_signature() -> None:
    body = fixture("payment_succeeded_legacy.json")
    old = legacy_header(body, OLD_SECRET).split(",")[1]
    new = legacy_header(body, SECRET).split(",")[1]
    adapter(scheme="legacy").verify(request(body, {"x-whop-signature": f"t={int(NOW)},{old},{new}"}), NOW)


@pytest.mark.parametrize("scheme", ["standard", "legacy"])
@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_within_default_tolerance(scheme: str, skew: int) -> None:
    adapter(scheme=scheme).verify(signed(fixture("payment_succeeded.json"), scheme=scheme), NOW + skew)


@pytest.mark.parametrize("scheme", ["standard", "legacy"])
@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamp_outside_default_tolerance(scheme: str, skew: int) -> None:
    with pytest.raises(SignatureError, match="timestamp outside tolerance"):
        adapter(scheme=scheme).verify(signed(fixture("payment_succeeded.json"), scheme=scheme), NOW + skew)


def test_tolerance_option_widens_the_window() -> None:
    body = fixture("payment_succeeded.json")
    adapter(tolerance_seconds=900).verify(signed(body), NOW + 600)
    with pytest.raises(SignatureError):
        adapter(tolerance_seconds=900).verify(signed(body), NOW + 901)


def test_options_default_and_validation() -> None:
    options = WhopOptions()
    assert (options.scheme, options.tolerance_seconds, options.sandbox) == ("standard", 300, False)
    with pytest.raises(ValidationError):
        WhopOptions.model_validate({"scheme": "v5"})
    with pytest.raises(ValidationError):
        WhopOptions(tolerance_seconds=0)
    with pytest.raises(ValidationError):
        WhopOptions.model_validate({"key_encoding": "raw"})


def test_registered_under_its_name() -> None:
    assert get_adapter_class("whop") is WhopAdapter


# --- parse: sales ---------------------------------------------------------------------------
# v1 samples built from docs.whop.com object examples and the SDK models (fixtures/whop/SOURCES.md)


def test_payment_succeeded_is_a_sale() -> None:
    event = parse_one(fixture("payment_succeeded.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "payment.succeeded"
    assert event.transaction_key == SALE_KEY
    assert isinstance(event.amount, Decimal)
    assert event.amount == Decimal("19.99") and str(event.amount) == "19.99"
    assert event.currency == "USD"
    assert event.customer.email == "john.doe@example.com"
    assert event.customer.customer_id == "user_xxxxxxxxxxxxx"
    assert event.customer.name == "John Doe"
    assert event.customer.external_id is None
    assert dict(event.customer.metadata) == {"user_id": "usr_1001"}
    assert event.product_id == "prod_xxxxxxxxxxxxx"
    assert event.product_type == "plan_xxxxxxxxxxxxx"
    assert event.test_mode is False
    assert event.occurred_at == datetime(2025, 1, 1, tzinfo=UTC)


def test_float_amounts_are_read_exactly() -> None:
    # through float, 12345678901234.575 would become ...234.57421875 and round to .57; exact it rounds to .58
    body = fixture("payment_succeeded.json").replace(b'"total": 19.99', b'"total": 12345678901234.575')
    assert parse_one(body).amount == Decimal("12345678901234.58")


def test_zero_decimal_currency_is_not_given_cents() -> None:
    def yen(payload: dict[str, Any]) -> None:
        payload["data"].update(currency="jpy", total=1500)

    event = parse_one(edited("payment_succeeded.json", yen))
    assert event.currency == "JPY"
    assert str(event.amount) == "1500"


def test_missing_email_permission_leaves_email_empty() -> None:
    event = parse_one(edited("payment_succeeded.json", lambda p: p["data"]["user"].update(email=None)))
    assert event.customer.email is None
    assert event.customer.customer_id == "user_xxxxxxxxxxxxx"


def test_metadata_scalars_are_stringified_and_nested_values_skipped() -> None:
    def odd(payload: dict[str, Any]) -> None:
        payload["data"]["metadata"] = {"n": 7, "f": 1.5, "b": False, "x": None, "d": {"a": 1}}

    assert dict(parse_one(edited("payment_succeeded.json", odd)).customer.metadata) == {
        "n": "7",
        "f": "1.5",
        "b": "false",
    }


def test_renewal_is_its_own_sale() -> None:
    first = parse_one(fixture("payment_succeeded.json"))
    renewal = parse_one(fixture("payment_succeeded_renewal.json"))
    assert renewal.kind is EventKind.SALE
    assert renewal.transaction_key == "whop:pay:pay_zzzzzzzzzzzzzz" != first.transaction_key


def test_first_payment_announced_twice_gives_one_sale() -> None:
    # a first subscription payment also arrives as invoice.paid and membership.activated: only the payment books
    invoice_paid = json.dumps({"id": "msg_1", "api_version": "v1", "type": "invoice.paid", "data": {"id": "inv_1"}})
    activated = json.dumps({"id": "msg_2", "api_version": "v1", "type": "membership.activated", "data": {}})
    events = [
        parse_one(fixture("payment_succeeded.json")),
        parse_one(invoice_paid.encode()),
        parse_one(activated.encode()),
        parse_one(fixture("payment_succeeded.json")),  # a redelivery
    ]
    assert {e.transaction_key for e in events if e.kind is EventKind.SALE} == {SALE_KEY}
    assert [e.kind for e in events[1:3]] == [EventKind.IGNORED, EventKind.IGNORED]


def test_zero_total_is_ignored() -> None:
    event = parse_one(edited("payment_succeeded.json", lambda p: p["data"].update(total=0.0)))
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and "total is 0" in event.reason


def test_legacy_payment_succeeded_is_a_sale() -> None:
    # whop.readme.io/reference/paymentsucceeded (legacy "action" / "final_amount"), email edited
    event = parse_one(fixture("payment_succeeded_legacy.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "payment.succeeded"
    assert event.transaction_key == "whop:pay:pay_6dWDN0kA5QW2hm"
    assert event.amount == Decimal("10.00")
    assert event.currency == "USD"
    assert event.customer.email == "hello@whop.com"
    assert event.customer.customer_id == "user_q61ixyl8cVGff"
    assert event.product_id == "pass_nTBNZkZbvGII9"
    assert event.occurred_at is None


def test_v5_receipt_shape_reads_user_id_and_metadata() -> None:
    # whopio/whop-sdk-ts packages/api/src/webhook-types.ts ReceiptData: user_id, product_id, plan_id, metadata
    body = json.dumps(
        {
            "api_version": "v5",
            "action": "payment.succeeded",
            "data": {
                "id": "pay_v5",
                "user_id": "user_v5",
                "product_id": "prod_v5",
                "plan_id": "plan_v5",
                "final_amount": 12.5,
                "currency": "eur",
                "metadata": {"user_id": "usr_9"},
            },
        }
    ).encode()
    event = parse_one(body)
    assert (event.transaction_key, event.amount, event.currency) == ("whop:pay:pay_v5", Decimal("12.50"), "EUR")
    assert (event.customer.customer_id, event.product_id, event.product_type) == ("user_v5", "prod_v5", "plan_v5")
    assert dict(event.customer.metadata) == {"user_id": "usr_9"}


def test_sandbox_option_marks_events_test_mode() -> None:
    assert parse_one(fixture("payment_succeeded.json"), sandbox=True).test_mode is True
    assert parse_one(fixture("refund_updated.json"), sandbox=True).test_mode is True


# --- parse: refunds -------------------------------------------------------------------------


def test_succeeded_refund_reverses_the_payment() -> None:
    event = parse_one(fixture("refund_updated.json"))
    assert event.kind is EventKind.REFUND
    assert event.event_type == "refund.updated"
    assert event.transaction_key == SALE_KEY
    assert event.amount == Decimal("19.99")
    assert event.currency == "USD"
    assert event.refund_id == "rf_xxxxxxxxxxxxxxx"
    assert event.sale_amount == Decimal("19.99")
    assert event.refunded_total is None
    assert event.full_refund is None  # the ledger compares this refund with the sale
    assert event.customer.email == "john.doe@example.com"
    assert dict(event.customer.metadata) == {"user_id": "usr_1001"}


def test_refund_shares_the_key_of_its_sale() -> None:
    assert (
        parse_one(fixture("refund_updated.json")).transaction_key
        == parse_one(fixture("payment_succeeded.json")).transaction_key
    )


@pytest.mark.parametrize("status", ["pending", "requires_action", "failed", "canceled"])
def test_refund_not_succeeded_is_ignored(status: str) -> None:
    event = parse_one(edited("refund_updated.json", lambda p: p["data"].update(status=status)))
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and status in event.reason


def test_pending_refund_created_fixture_is_ignored() -> None:
    assert parse_one(fixture("refund_created.json")).kind is EventKind.IGNORED


def test_refund_created_already_succeeded_names_the_same_refund() -> None:
    created = parse_one(edited("refund_created.json", lambda p: p["data"].update(status="succeeded")))
    updated = parse_one(fixture("refund_updated.json"))
    assert created.kind is EventKind.REFUND
    assert (created.transaction_key, created.refund_id, created.amount) == (
        updated.transaction_key,
        updated.refund_id,
        updated.amount,
    )


def test_partial_refund_carries_this_refunds_amount() -> None:
    event = parse_one(edited("refund_updated.json", lambda p: p["data"].update(amount=6.9)))
    assert event.amount == Decimal("6.90")
    assert event.sale_amount == Decimal("19.99")


def test_refund_of_a_payment_no_longer_available_uses_payment_id() -> None:
    # "payment: Null if the payment is no longer available"; v5 refunds carry payment_id
    def v5(payload: dict[str, Any]) -> None:
        payload["data"]["payment"] = None
        payload["data"]["payment_id"] = "pay_xxxxxxxxxxxxxx"

    event = parse_one(edited("refund_updated.json", v5))
    assert event.transaction_key == SALE_KEY
    assert event.sale_amount is None and event.customer.email is None


# --- parse: disputes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("dispute_created.json", DisputeState.OPENED),
        ("dispute_updated_lost.json", DisputeState.LOST),
        ("dispute_updated_won.json", DisputeState.WON),
    ],
)
def test_disputes(name: str, state: DisputeState) -> None:
    event = parse_one(fixture(name))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is state
    assert event.transaction_key == SALE_KEY
    assert event.amount == Decimal("19.99")
    assert event.currency == "USD"
    assert event.customer.email == "john.doe@example.com"
    assert event.reason is None


def test_under_review_is_still_open() -> None:
    event = parse_one(edited("dispute_updated_lost.json", lambda p: p["data"].update(status="under_review")))
    assert event.dispute_state is DisputeState.OPENED


@pytest.mark.parametrize(
    "status", ["warning_needs_response", "warning_under_review", "warning_closed", "closed", "other"]
)
def test_inquiries_and_unclear_outcomes_are_ignored(status: str) -> None:
    event = parse_one(edited("dispute_created.json", lambda p: p["data"].update(status=status)))
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and status in event.reason


def test_visa_rdr_is_noted() -> None:
    event = parse_one(edited("dispute_updated_lost.json", lambda p: p["data"].update(visa_rdr=True)))
    assert event.dispute_state is DisputeState.LOST
    assert event.reason == "resolved by Visa RDR"


def test_dispute_outcome_is_reported() -> None:
    assert WhopAdapter.reports_dispute_outcome is True


# --- parse: ignored events ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "reason_part"),
    [
        ("payment.created", "not settled"),
        ("payment.pending", "not settled"),
        ("payment.failed", "did not succeed"),
        ("invoice.paid", "payment.succeeded"),
        ("dispute_alert.created", "early warning"),
        ("resolution_center_case.created", "resolution case"),
        ("membership.activated", "membership"),
        ("membership.deactivated", "membership"),
        ("membership.went_invalid", "membership"),
        ("membership.cancel_at_period_end_changed", "membership"),
        ("app_payment.succeeded", "app"),
        ("chat.message.created", "not used"),
    ],
)
def test_other_events_are_ignored_with_a_reason(event_type: str, reason_part: str) -> None:
    event = parse_one(json.dumps({"type": event_type, "data": {}}).encode())
    assert event.kind is EventKind.IGNORED
    assert event.event_type == event_type
    assert event.reason is not None and reason_part in event.reason


# --- parse: junk --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[]", b"{}", b'{"type": 3}', b'{"type": "payment.succeeded"}', b"[" * 100_000],
)
def test_unreadable_bodies_raise_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("payment_succeeded.json", {"id": None}),
        ("payment_succeeded.json", {"total": "19.99"}),
        ("payment_succeeded.json", {"total": True}),
        ("payment_succeeded.json", {"total": -1}),
        ("refund_updated.json", {"amount": -19.99}),
        ("payment_succeeded.json", {"total": None}),
        ("payment_succeeded.json", {"currency": None}),
        ("payment_succeeded.json", {"currency": "doge"}),
        ("refund_updated.json", {"amount": None}),
        ("refund_updated.json", {"id": None}),
        ("refund_updated.json", {"payment": None}),
        ("refund_updated.json", {"currency": 840}),
        ("dispute_updated_lost.json", {"payment": None}),
        ("dispute_updated_lost.json", {"amount": "19.99"}),
    ],
)
def test_events_acted_on_with_bad_fields_raise_payload_error(name: str, data: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(edited(name, lambda p: p["data"].update(data))))


@pytest.mark.parametrize("amount", [b"1e400", b"1e999999999", b"-1E+30"])
def test_absurd_amounts_raise_payload_error(amount: bytes) -> None:
    body = fixture("payment_succeeded.json").replace(b'"total": 19.99', b'"total": ' + amount)
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


# --- delivery id ----------------------------------------------------------------------------


def test_delivery_id_is_the_webhook_id_header() -> None:
    req = signed(fixture("payment_succeeded.json"))
    assert adapter().delivery_id(req) == req.headers["webhook-id"]


def test_delivery_id_falls_back_to_the_envelope_id() -> None:
    assert adapter().delivery_id(request(fixture("payment_succeeded.json"))) == "msg_xxxxxxxxxxxxxxxxxxxxxxxx"


@pytest.mark.parametrize("body", [b"", b"\xff junk", b"[1]", b'{"id": "pay_not_a_message"}'])
def test_delivery_id_falls_back_to_the_body_hash(body: bytes) -> None:
    assert adapter().delivery_id(request(body)) == body_hash(body)


def test_legacy_delivery_id_is_the_body_hash() -> None:
    body = fixture("payment_succeeded_legacy.json")
    assert adapter(scheme="legacy").delivery_id(signed(body, scheme="legacy")) == body_hash(body)


def test_the_tax_is_kept_out_of_sales_and_partial_refunds(tmp_path: Path) -> None:
    # Payment model (whopio/whopsdk-python, SOURCES.md): total, of which tax_amount "the calculated
    # amount of the sales/VAT tax"; a refund's amount is gross and its payment names total and tax_amount
    def taxed(payload: dict[str, Any]) -> None:
        payload["data"].update(total=12.1, subtotal=10.0, tax_amount=2.1, tax_behavior="exclusive")

    def half_back(payload: dict[str, Any]) -> None:
        payload["data"].update(amount=6.05, status="succeeded")
        payload["data"]["payment"].update(total=12.1, subtotal=10.0, tax_amount=2.1)

    sale = parse_one(edited("payment_succeeded.json", taxed))
    assert (sale.amount, sale.tax) == (Decimal("12.10"), Decimal("2.10"))
    refund = parse_one(edited("refund_created.json", half_back))
    assert (refund.amount, refund.sale_amount, refund.sale_tax) == (Decimal("6.05"), Decimal("12.10"), Decimal("2.10"))
    h = LedgerHarness(tmp_path / "l.db", customer_key=["metadata.user_id", "email"])
    try:
        h.apply(sale)
        assert h.live_amount() == Decimal("10.00")
        h.apply(refund)
        assert h.live_amount() == Decimal("5.00")
    finally:
        h.close()
