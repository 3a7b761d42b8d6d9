"""Dodo Payments adapter: Standard Webhooks vectors first, then parsing of Dodo's sample payloads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from pydantic import ValidationError

from bridge.events import DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import PayloadError, ProviderUnavailable, SignatureError, WebhookRequest, body_hash
from providers.dodopayments import CODE_GONE, CODE_UNKNOWN, DodoPaymentsAdapter, DodoPaymentsOptions
from tests.ledger_kit import LedgerHarness
from tests.provider_api_server import ProviderApiServer, read_once

FIXTURES = Path(__file__).parent / "fixtures" / "dodopayments"

# Standard Webhooks sign vector: standard-webhooks/standard-webhooks@b2fa7b8719fb75d326b591077f5d1b385cfcdfae
# libraries/python/tests/test_webhooks.py::test_sign_function
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MjQy"
NOW = 1_754_285_445.0


def adapter(*secrets: str, **options: Any) -> DodoPaymentsAdapter:
    return DodoPaymentsAdapter(secrets or (SECRET,), DodoPaymentsOptions(**options))


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/dodo", headers=headers or {}, body=body)


def signed(body: bytes, secret: str = SECRET, now: float = NOW) -> WebhookRequest:
    return request(body, adapter(secret).sign(body, secret, now).headers)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def edited(name: str, **data: Any) -> bytes:
    """A fixture with some `data` fields replaced (None deletes the field)."""
    payload = json.loads(fixture(name))
    for key, value in data.items():
        if value is None:
            payload["data"].pop(key, None)
        else:
            payload["data"][key] = value
    return json.dumps(payload).encode()


def parse_one(body: bytes) -> NormalizedEvent:
    events = adapter().parse(request(body))
    assert len(events) == 1
    return events[0]


# --- signature: published vectors ------------------------------------------------------------------


def vector_headers(signature: str = VECTOR_SIGNATURE) -> dict[str, str]:
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": signature,
    }


def test_standard_webhooks_vector_verifies() -> None:
    adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers()), now=VECTOR_TIMESTAMP)


def test_standard_webhooks_vector_verifies_without_the_whsec_prefix() -> None:
    bare = VECTOR_SECRET.removeprefix("whsec_")
    adapter(bare).verify(request(VECTOR_BODY, vector_headers()), now=VECTOR_TIMESTAMP)


def test_standard_webhooks_vector_with_one_wrong_character_is_rejected() -> None:
    wrong = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
    with pytest.raises(SignatureError, match="does not match"):
        adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers(wrong)), now=VECTOR_TIMESTAMP)


def test_standard_webhooks_vector_is_a_raw_key_mismatch() -> None:
    # Dodo uses the spec key (base64-decoded), not the UTF-8 bytes of the secret (Polar legacy, Whop)
    raw_key_signature = "v1,TcxlhK9b6UD6iVI1ZU2tTqp8PEVfYRseNNfa6b+LcUg="
    with pytest.raises(SignatureError):
        adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers(raw_key_signature)), now=VECTOR_TIMESTAMP)


def test_multiple_signatures_any_v1_entry_may_match() -> None:
    # the library suite's "v1,<bad> v2,<other> v1,<good> v1,<bad>" case
    header = f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc {VECTOR_SIGNATURE} v1,AAAA"
    adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers(header)), now=VECTOR_TIMESTAMP)


# --- signature: Dodo SDK negative cases --------------------------------------------------------------
# dodopayments/dodopayments-python@14aaf05d47824692a0c932607018416fa7d9b988
# tests/api_resources/test_webhooks.py::test_method_unwrap (re-signed with a spec-form secret)

SDK_BODY = fixture("payment_succeeded.json")


def test_sdk_case_valid_delivery_unwraps() -> None:
    adapter().verify(signed(SDK_BODY), now=NOW)


def test_sdk_case_signature_of_another_body_is_rejected() -> None:
    headers = dict(signed(SDK_BODY).headers)
    headers["webhook-signature"] = dict(signed(b"xxx").headers)["webhook-signature"]
    with pytest.raises(SignatureError, match="webhook-signature does not match"):
        adapter().verify(request(SDK_BODY, headers), now=NOW)


def test_sdk_case_changed_webhook_id_is_rejected() -> None:
    headers = {**signed(SDK_BODY).headers, "webhook-id": "bad"}
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(SDK_BODY, headers), now=NOW)


def test_sdk_case_timestamp_zero_is_rejected() -> None:
    headers = {**signed(SDK_BODY).headers, "webhook-timestamp": "0"}
    with pytest.raises(SignatureError, match="timestamp outside tolerance"):
        adapter().verify(request(SDK_BODY, headers), now=NOW)


# --- signature: round trip, failures, rotation, tolerance --------------------------------------------


def test_sign_produces_the_three_standard_headers() -> None:
    headers = adapter().sign(SDK_BODY, SECRET, NOW).headers
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-timestamp"] == str(int(NOW))
    assert headers["webhook-id"].startswith("msg_") and "." not in headers["webhook-id"]
    assert headers["webhook-signature"].startswith("v1,")


def test_sign_agrees_with_the_standardwebhooks_library() -> None:
    now = time.time()
    headers = adapter().sign(SDK_BODY, SECRET, now).headers
    standardwebhooks.Webhook(SECRET).verify(SDK_BODY, headers)  # raises on mismatch
    ours = adapter().sign(SDK_BODY, SECRET, now).headers["webhook-signature"]
    theirs = standardwebhooks.Webhook(SECRET).sign(
        headers["webhook-id"], datetime.fromtimestamp(int(now), tz=UTC), SDK_BODY.decode()
    )
    assert ours == theirs


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        adapter(OTHER_SECRET).verify(signed(SDK_BODY), now=NOW)


def test_tampered_body_is_rejected() -> None:
    genuine = signed(SDK_BODY)
    tampered = request(SDK_BODY.replace(b'"total_amount": 400', b'"total_amount": 40000'), dict(genuine.headers))
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(tampered, now=NOW)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(header: str) -> None:
    headers = dict(signed(SDK_BODY).headers)
    del headers[header]
    with pytest.raises(SignatureError, match=f"missing {header}"):
        adapter().verify(request(SDK_BODY, headers), now=NOW)


def test_malformed_timestamp_is_rejected() -> None:
    headers = {**signed(SDK_BODY).headers, "webhook-timestamp": "2025-08-04T05:30:45Z"}
    with pytest.raises(SignatureError, match="malformed webhook-timestamp"):
        adapter().verify(request(SDK_BODY, headers), now=NOW)


@pytest.mark.parametrize(
    "value", ["garbage", "v1,", "v1,not*base64", "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="]
)
def test_malformed_signature_header_is_rejected(value: str) -> None:
    headers = {**signed(SDK_BODY).headers, "webhook-signature": value}
    with pytest.raises(SignatureError):
        adapter().verify(request(SDK_BODY, headers), now=NOW)


def test_rotation_either_secret_verifies() -> None:
    both = adapter(SECRET, OTHER_SECRET)
    both.verify(signed(SDK_BODY, SECRET), now=NOW)
    both.verify(signed(SDK_BODY, OTHER_SECRET), now=NOW)


def test_rotation_header_signed_with_old_and_new_secret() -> None:
    old = signed(SDK_BODY, OTHER_SECRET).headers
    new = signed(SDK_BODY, SECRET).headers
    headers = {**new, "webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}
    adapter(SECRET).verify(request(SDK_BODY, headers), now=NOW)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_within_default_tolerance(skew: int) -> None:
    adapter().verify(signed(SDK_BODY, now=NOW), now=NOW + skew)


@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamp_outside_default_tolerance(skew: int) -> None:
    with pytest.raises(SignatureError, match="timestamp outside tolerance"):
        adapter().verify(signed(SDK_BODY, now=NOW), now=NOW + skew)


def test_tolerance_option_widens_the_window() -> None:
    adapter(tolerance_seconds=900).verify(signed(SDK_BODY, now=NOW), now=NOW + 600)
    with pytest.raises(SignatureError):
        adapter(tolerance_seconds=900).verify(signed(SDK_BODY, now=NOW), now=NOW + 901)


def test_options_default_and_validation() -> None:
    assert DodoPaymentsOptions().tolerance_seconds == 300
    with pytest.raises(ValidationError):
        DodoPaymentsOptions(tolerance_seconds=0)
    with pytest.raises(ValidationError):
        DodoPaymentsOptions.model_validate({"key_encoding": "raw"})


def test_secret_that_is_not_base64_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="whsec_<base64>") as info:
        adapter("whsec_not*base64!")
    assert "not*base64!" not in str(info.value)


def test_registered_under_its_name() -> None:
    assert get_adapter_class("dodopayments") is DodoPaymentsAdapter


# --- parse: Dodo's sample payloads ---------------------------------------------------------------
# Samples: dodopayments/dodopayments-cli (`dodo wh trigger` generators), see fixtures/dodopayments/SOURCES.md


def test_payment_succeeded_is_a_sale() -> None:
    # dodopayments-cli@3254b200 dodo-webhooks/functions/generate-payment-data.ts (genPaymentSuccess)
    event = parse_one(fixture("payment_succeeded.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "payment.succeeded"
    assert event.transaction_key == "dodo:pay:pay_test"
    assert event.amount == Decimal("4.00")
    assert str(event.amount) == "4.00"
    assert event.currency == "USD"
    assert event.customer.email == "test@acme.com"
    assert event.customer.customer_id == "cus_test"
    assert event.customer.name == "Test user"
    assert event.customer.external_id is None
    assert dict(event.customer.metadata) == {"user_id": "usr_1001"}
    assert event.product_id == "pdt_test"
    assert event.product_type == "one_time"
    assert event.test_mode is False
    assert event.occurred_at == datetime(2025, 8, 4, 5, 30, 45, 182000, tzinfo=UTC)


def test_subscription_charge_is_a_sale_keyed_on_its_payment() -> None:
    # dodopayments-cli@3254b200 generate-payment-data.ts, edited into a subscription charge (SOURCES.md)
    event = parse_one(fixture("payment_succeeded_subscription.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == "dodo:pay:pay_sub_test"
    assert event.amount == Decimal("4.00")
    assert event.product_type == "subscription"
    assert event.product_id is None
    assert dict(event.customer.metadata) == {"user_id": "usr_1001"}


@pytest.mark.parametrize("name", ["subscription_active.json", "subscription_renewed.json"])
def test_subscription_announcements_are_ignored(name: str) -> None:
    # dodopayments-cli@11c7dd2e src/commands/webhook/functions/generate-subscription-data.ts
    event = parse_one(fixture(name))
    assert event.kind is EventKind.IGNORED
    assert event.transaction_key is None
    assert event.reason is not None and "payment.succeeded" in event.reason


def test_first_subscription_charge_announced_twice_gives_one_sale() -> None:
    # payment.succeeded + subscription.active describe one charge: only the payment books a sale
    events = [
        *parse_one_list("payment_succeeded_subscription.json"),
        *parse_one_list("subscription_active.json"),
    ]
    sales = [e for e in events if e.kind is EventKind.SALE]
    assert [e.transaction_key for e in sales] == ["dodo:pay:pay_sub_test"]


def parse_one_list(name: str) -> list[NormalizedEvent]:
    return adapter().parse(request(fixture(name)))


def test_redelivered_payment_gives_the_same_key() -> None:
    first = parse_one(fixture("payment_succeeded.json"))
    # the latest state is delivered: a retry after a refund says status "refunded", same payment
    again = parse_one(edited("payment_succeeded.json", status="refunded"))
    assert again.kind is EventKind.SALE
    assert again.transaction_key == first.transaction_key


def test_full_refund() -> None:
    # dodopayments-cli@3254b200 dodo-webhooks/functions/generate-refund-data.ts (genRefundSuccess)
    event = parse_one(fixture("refund_succeeded.json"))
    assert event.kind is EventKind.REFUND
    assert event.event_type == "refund.succeeded"
    assert event.transaction_key == "dodo:pay:pay_test"
    assert event.amount == Decimal("4.00")
    assert event.currency == "USD"
    assert event.full_refund is True
    assert event.refunded_total is None
    assert event.sale_amount is None
    assert event.customer.email == "test@acme.com"
    assert event.test_mode is False


def test_refund_shares_the_key_of_its_sale() -> None:
    sale = parse_one(fixture("payment_succeeded.json"))
    refund = parse_one(fixture("refund_succeeded.json"))
    assert refund.transaction_key == sale.transaction_key


def test_partial_refund_carries_this_refunds_amount() -> None:
    # genRefundSuccess with is_partial true and a 1.50 refund
    event = parse_one(edited("refund_succeeded.json", is_partial=True, amount=150))
    assert event.kind is EventKind.REFUND
    assert event.amount == Decimal("1.50")
    assert event.full_refund is False


def test_refund_without_is_partial_leaves_full_refund_unknown() -> None:
    event = parse_one(edited("refund_succeeded.json", is_partial=None))
    assert event.full_refund is None


def test_refund_without_amount_or_currency_still_names_the_sale() -> None:
    # the schema makes both optional on refunds
    event = parse_one(edited("refund_succeeded.json", amount=None, currency=None))
    assert event.transaction_key == "dodo:pay:pay_test"
    assert event.amount is None
    assert event.currency is None


@pytest.mark.parametrize(
    ("name", "state", "amount"),
    [
        # dodopayments-cli@3254b200 dodo-webhooks/functions/generate-dispute-data.ts
        ("dispute_opened.json", DisputeState.OPENED, Decimal("4.00")),
        ("dispute_accepted.json", DisputeState.LOST, Decimal("4.00")),
        ("dispute_won.json", DisputeState.WON, Decimal("4.00")),
        # amount as the schema's string "400"
        ("dispute_lost.json", DisputeState.LOST, Decimal("4.00")),
    ],
)
def test_disputes(name: str, state: DisputeState, amount: Decimal) -> None:
    event = parse_one(fixture(name))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is state
    assert event.transaction_key == "dodo:pay:pay_test"
    assert event.amount == amount
    assert event.currency == "USD"
    assert event.customer.email == "test@acme.com"


def test_dispute_resolved_by_rdr_says_so() -> None:
    event = parse_one(edited("dispute_lost.json", is_resolved_by_rdr=True))
    assert event.dispute_state is DisputeState.LOST
    assert event.reason == "resolved by Visa RDR"


def test_dispute_amount_in_an_unknown_form_is_left_unset() -> None:
    event = parse_one(edited("dispute_opened.json", amount="4.00"))
    assert event.kind is EventKind.DISPUTE
    assert event.amount is None


def test_an_expired_dispute_is_lost(tmp_path: Path) -> None:
    # docs.dodopayments.com/developer-resources/webhooks/intents/dispute: dispute.expired "typically
    # resolves against you"; no lost/won follows it, so under reverse_on_lost it must reverse the sale
    payload = json.loads(fixture("dispute_opened.json"))
    payload["type"] = "dispute.expired"
    event = parse_one(json.dumps(payload).encode())
    assert (event.kind, event.dispute_state) == (EventKind.DISPUTE, DisputeState.LOST)
    h = LedgerHarness(tmp_path / "l.db", adapter(), customer_key=["metadata.user_id", "email"])
    try:
        h.apply(parse_one(fixture("payment_succeeded.json")))
        h.apply(parse_one(fixture("dispute_opened.json")))
        assert h.live_amount() == Decimal("4.00")  # reverse_on_lost waits
        h.apply(event)
        assert h.live() == {}
    finally:
        h.close()


def test_a_sandbox_endpoint_marks_every_event_as_test_mode() -> None:
    # Dodo's payloads carry no test flag: test mode is a separate environment with its own webhooks
    body = fixture("payment_succeeded.json")
    assert parse_one(body).test_mode is False
    [event] = adapter(sandbox=True).parse(request(body))
    assert event.test_mode is True


def test_the_tax_inside_total_amount_is_named() -> None:
    # SDK Payment model: total_amount is "charged to the customer including tax"; tax is its tax part
    event = parse_one(edited("payment_succeeded.json", total_amount=1210, tax=210))
    assert (event.amount, event.tax) == (Decimal("12.10"), Decimal("2.10"))
    assert parse_one(fixture("payment_succeeded.json")).tax is None  # the fixture's "tax": null


@pytest.mark.parametrize("event_type", ["dispute.cancelled", "dispute.challenged"])
def test_other_dispute_states_are_ignored(event_type: str) -> None:
    payload = json.loads(fixture("dispute_opened.json"))
    payload["type"] = event_type
    event = parse_one(json.dumps(payload).encode())
    assert event.kind is EventKind.IGNORED
    assert event.event_type == event_type
    assert event.reason


def test_payment_failed_is_ignored() -> None:
    # dodopayments-cli@3254b200 generate-payment-data.ts (genPaymentFailed)
    event = parse_one(fixture("payment_failed.json"))
    assert event.kind is EventKind.IGNORED
    assert event.reason == "payment did not succeed"


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("payment.processing", "payment not settled yet; payment.succeeded follows"),
        ("payment.cancelled", "payment did not succeed"),
        ("refund.failed", "refund did not go through"),
        ("license_key.created", "event not used by the bridge"),
        ("subscription.cancelled", "event not used by the bridge"),
        ("payout.created", "event not used by the bridge"),
    ],
)
def test_ignored_events_have_reasons(event_type: str, reason: str) -> None:
    body = json.dumps({"business_id": "bus_test", "type": event_type, "data": {}}).encode()
    event = parse_one(body)
    assert event.kind is EventKind.IGNORED
    assert event.reason == reason


def test_currency_exponent_is_the_currencys_own() -> None:
    jpy = parse_one(edited("payment_succeeded.json", currency="JPY", total_amount=1500))
    assert (jpy.amount, jpy.currency) == (Decimal("1500"), "JPY")
    kwd = parse_one(edited("payment_succeeded.json", currency="kwd", total_amount=12345))
    assert (kwd.amount, kwd.currency) == (Decimal("12.345"), "KWD")


def test_metadata_keeps_scalars_as_strings_and_skips_the_rest() -> None:
    metadata = {"user_id": "usr_1001", "seats": 3, "trial": True, "nested": {"a": "b"}, "gone": None}
    event = parse_one(edited("payment_succeeded.json", metadata=metadata))
    assert dict(event.customer.metadata) == {"user_id": "usr_1001", "seats": "3", "trial": "true"}


def test_integer_ids_become_strings() -> None:
    event = parse_one(edited("payment_succeeded.json", payment_id=820982911946154508))
    assert event.transaction_key == "dodo:pay:820982911946154508"


def test_zero_amount_payment_is_a_zero_sale() -> None:
    event = parse_one(edited("payment_succeeded.json", total_amount=0))
    assert event.kind is EventKind.SALE
    assert event.amount == Decimal("0.00")


# --- parse: bodies that cannot be read ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"data": {}}',
        b'{"type": "", "data": {}}',
        b'{"type": "payment.succeeded"}',
        b'{"type": "payment.succeeded", "data": []}',
    ],
)
def test_unreadable_envelopes_raise_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("payment_succeeded.json", {"payment_id": None}),
        ("payment_succeeded.json", {"payment_id": ""}),
        ("payment_succeeded.json", {"total_amount": None}),
        ("payment_succeeded.json", {"total_amount": "400"}),
        ("payment_succeeded.json", {"total_amount": True}),
        ("payment_succeeded.json", {"currency": None}),
        ("payment_succeeded.json", {"currency": "XYZ1"}),
        ("refund_succeeded.json", {"payment_id": None}),
        ("refund_succeeded.json", {"amount": "400"}),
        ("refund_succeeded.json", {"currency": 840}),
        ("dispute_lost.json", {"payment_id": None}),
    ],
)
def test_missing_or_bad_fields_raise_payload_error(name: str, data: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(edited(name, **data)))


def test_fractional_minor_units_raise_payload_error() -> None:
    body = fixture("payment_succeeded.json").replace(b'"total_amount": 400', b'"total_amount": 400.5')
    with pytest.raises(PayloadError, match=r"payment\.succeeded: "):
        adapter().parse(request(body))


# --- delivery id -------------------------------------------------------------------------------


def test_delivery_id_is_the_webhook_id_header() -> None:
    req = signed(SDK_BODY)
    assert adapter().delivery_id(req) == req.headers["webhook-id"]


def test_delivery_id_reads_the_svix_twin() -> None:
    assert adapter().delivery_id(request(SDK_BODY, {"svix-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"})) == (
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    )


def test_delivery_id_falls_back_to_the_body_hash_even_for_junk() -> None:
    assert adapter().delivery_id(request(b"\xff junk")) == body_hash(b"\xff junk")


def test_refunds_carry_their_refund_id_so_a_repeat_is_applied_once() -> None:
    # fixture: tests/fixtures/dodopayments/refund_succeeded.json (see SOURCES.md)
    [event] = adapter().parse(request(fixture("refund_succeeded.json")))
    assert event.refund_id == "ref_test"


# --- discount codes (issue 15): the payment names only discount_id; the code is Dodo's API's -------

DISCOUNT_ID = "dsc_qxxEmg5PuM1uNTE0LgkP9"


def _read(dodo: DodoPaymentsAdapter, body: bytes) -> list[NormalizedEvent]:
    return read_once(dodo, request(body))


@pytest.fixture
def dodo_api() -> Iterator[ProviderApiServer]:
    with ProviderApiServer("dodopayments") as server:
        server.put("/discounts", DISCOUNT_ID, json.loads(fixture("api/discount.json")))
        yield server


def _with_key(server: ProviderApiServer) -> DodoPaymentsAdapter:
    return adapter(api_key=server.api_key, api_base_url=server.url)


def test_without_an_api_key_a_discounted_sale_says_its_code_is_unknown() -> None:
    [sale] = _read(adapter(), edited("payment_succeeded.json", discount_id=DISCOUNT_ID))
    assert sale.coupon_code is None
    assert sale.reason == CODE_UNKNOWN
    [plain] = _read(adapter(), fixture("payment_succeeded.json"))
    assert (plain.coupon_code, plain.reason) == (None, None)


def test_with_an_api_key_the_code_is_read_from_the_discount(dodo_api: ProviderApiServer) -> None:
    [sale] = _read(_with_key(dodo_api), edited("payment_succeeded.json", discount_id=DISCOUNT_ID))
    assert (sale.kind, sale.coupon_code, sale.reason) == (EventKind.SALE, "PODCAST20", None)
    assert [(r.path, r.status) for r in dodo_api.requests] == [(f"/discounts/{DISCOUNT_ID}", 200)]


def test_payments_without_a_discount_and_other_events_ask_nothing(dodo_api: ProviderApiServer) -> None:
    _read(_with_key(dodo_api), fixture("payment_succeeded.json"))
    _read(_with_key(dodo_api), edited("refund_succeeded.json", discount_id=DISCOUNT_ID))
    assert dodo_api.requests == []


def test_a_deleted_discount_keeps_the_sale_without_a_code(dodo_api: ProviderApiServer) -> None:
    [sale] = _read(_with_key(dodo_api), edited("payment_succeeded.json", discount_id="dsc_gone"))
    assert (sale.kind, sale.transaction_key, sale.coupon_code) == (EventKind.SALE, "dodo:pay:pay_test", None)
    assert sale.reason == CODE_GONE


@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_a_failed_look_up_leaves_the_call_to_be_read_again(dodo_api: ProviderApiServer, status: int) -> None:
    dodo_api.fail_next(1, status=status)
    with pytest.raises(ProviderUnavailable, match=f"Dodo Payments API .*{status}"):
        _read(_with_key(dodo_api), edited("payment_succeeded.json", discount_id=DISCOUNT_ID))


def test_an_unreachable_api_leaves_the_call_to_be_read_again() -> None:
    with ProviderApiServer("dodopayments") as server:
        url = server.url
    with pytest.raises(ProviderUnavailable, match="unreachable"):
        _read(adapter(api_key="k", api_base_url=url), edited("payment_succeeded.json", discount_id=DISCOUNT_ID))
