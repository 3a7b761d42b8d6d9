"""Paystack adapter: SHA-512 signature vector and round trips, parsing of the official samples, junk."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.events import DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import AdapterOptions, PayloadError, SignatureError, WebhookRequest, body_hash
from providers.paystack import PaystackAdapter
from providers.signatures import sign_hmac

FIXTURES = Path(__file__).parent / "fixtures" / "paystack"
SECRET = "sk_live_0c7f3d9e2b8a41f6a5d4c3b2a1908f7e6d5c4b3a"
OLD_SECRET = "sk_live_9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
NOW = 1_475_269_820.0

# RFC 4231 test case 2 with HMAC-SHA512
RFC4231_KEY = "Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_SHA512 = (
    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fd"
    "caeab1a34d4a6b4b636e070a38bce737"
)

CHARGE = "paystack:ref:qTPrJoy9Bx"


def adapter(*secrets: str) -> PaystackAdapter:
    return PaystackAdapter(secrets or (SECRET,), AdapterOptions())


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def dump(payload: Any) -> bytes:
    """JSON with every Decimal written as the number it is (json.dumps alone would quote it)."""
    text = json.dumps(payload, default=lambda d: f"__decimal__{d}__")
    return re.sub(r'"__decimal__(.*?)__"', r"\1", text).encode()


def edited(name: str, edit: Any) -> bytes:
    payload = json.loads(fixture(name), parse_float=Decimal)
    edit(payload["data"])
    return dump(payload)


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    return request(body, adapter(secret).sign(body, secret, NOW).headers)


def parse_one(body: bytes) -> NormalizedEvent:
    events = adapter().parse(request(body))
    assert len(events) == 1
    return events[0]


# --- signature -----------------------------------------------------------------------------------


def test_rfc4231_case_2_vector_with_sha512() -> None:
    assert sign_hmac(RFC4231_KEY.encode(), RFC4231_DATA, "sha512", "hex") == RFC4231_SHA512
    headers = adapter(RFC4231_KEY).sign(RFC4231_DATA, RFC4231_KEY, NOW).headers
    assert headers == {"x-paystack-signature": RFC4231_SHA512}
    adapter(RFC4231_KEY).verify(request(RFC4231_DATA, headers), NOW)


def test_signature_is_hex_hmac_sha512_of_the_raw_body_with_the_secret_key() -> None:
    body = fixture("charge_success.json")
    expected = hmac.new(SECRET.encode("utf-8"), body, hashlib.sha512).hexdigest()
    assert len(expected) == 128
    assert adapter().sign(body, SECRET, NOW).headers["x-paystack-signature"] == expected
    adapter().verify(request(body, {"x-paystack-signature": expected}), NOW)
    # Paystack's hex is lower-case; an upper-case copy decodes to the same digest
    adapter().verify(request(body, {"x-paystack-signature": expected.upper()}), NOW)


def test_sha256_digest_is_rejected() -> None:
    body = fixture("charge_success.json")
    sha256 = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(body, {"x-paystack-signature": sha256}), NOW)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "e2e.json"))
def test_sign_verify_round_trip(name: str) -> None:
    adapter().verify(signed(fixture(name)), NOW)


def test_wrong_secret_is_rejected() -> None:
    # a test key does not verify live events, and the reverse
    with pytest.raises(SignatureError, match="x-paystack-signature does not match"):
        adapter().verify(signed(fixture("charge_success.json"), "sk_test_somebodyElse"), NOW)


def test_missing_header_is_rejected() -> None:
    with pytest.raises(SignatureError, match="missing x-paystack-signature"):
        adapter().verify(request(fixture("charge_success.json")), NOW)


def test_tampered_body_is_rejected() -> None:
    body = fixture("charge_success.json")
    genuine = signed(body)
    tampered = body.replace(b'"amount":10000', b'"amount":90000')
    assert tampered != body
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(tampered, dict(genuine.headers)), NOW)


@pytest.mark.parametrize("header", ["not-hex", "sha512=" + RFC4231_SHA512, "abc"])
def test_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(SignatureError, match="malformed x-paystack-signature"):
        adapter().verify(request(b"{}", {"x-paystack-signature": header}), NOW)


def test_truncated_signature_is_a_mismatch() -> None:
    body = fixture("charge_success.json")
    short = signed(body).headers["x-paystack-signature"][:64]
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(body, {"x-paystack-signature": short}), NOW)


def test_rotation_accepts_old_and_new_secret_key() -> None:
    body = fixture("refund_processed.json")
    both = adapter(SECRET, OLD_SECRET)
    both.verify(signed(body, SECRET), NOW)
    both.verify(signed(body, OLD_SECRET), NOW)
    with pytest.raises(SignatureError):
        both.verify(signed(body, "sk_live_third"), NOW)
    with pytest.raises(SignatureError):
        adapter(SECRET).verify(signed(body, OLD_SECRET), NOW)


def test_no_timestamp_so_no_tolerance() -> None:
    # Paystack retries for up to 72 hours with the same body and signature
    adapter().verify(signed(fixture("charge_success.json")), NOW + 72 * 3600)


def test_empty_secret_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="empty"):
        PaystackAdapter([""], AdapterOptions())


# --- sales ---------------------------------------------------------------------------------------


def test_charge_success_is_a_sale_of_the_reference() -> None:
    # PaystackOSS/doc-code-snippets webhooks/events.js `transaction_successful`, faithful
    event = parse_one(fixture("charge_success.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "charge.success"
    assert event.transaction_key == CHARGE
    assert event.amount == Decimal("100.00")  # 10000 kobo
    assert event.currency == "NGN"
    assert event.customer.email == "bojack@horseman.com"
    assert event.customer.customer_id == "CUS_qo38as2hpsgk2r0"
    assert event.customer.name == "BoJack Horseman"
    assert event.customer.metadata == {}  # `"metadata":0` in the sample
    assert event.product_id is None
    assert event.product_type == "one_time"
    assert event.test_mode is False
    assert event.occurred_at == datetime(2016, 9, 30, 21, 10, 19, tzinfo=UTC)


def test_test_domain_is_test_mode() -> None:
    # PaystackOSS/doc-code-snippets payment-methods/qr-event.js, faithful (`"domain": "test"`)
    event = parse_one(fixture("charge_success_test.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == "paystack:ref:48rx32f1womvcr4"
    assert event.amount == Decimal("100.00")
    assert event.customer.email == "customer@email.com"
    assert event.customer.metadata == {}  # `"metadata": ""` in the sample
    assert event.test_mode is True


def test_custom_fields_are_flattened_by_variable_name() -> None:
    # charge_success.json with the metadata example of paystack.com/docs/payments/metadata (+ user_id)
    event = parse_one(fixture("charge_success_custom_fields.json"))
    assert event.customer.metadata == {
        "cart_id": "398",
        "Invoice ID": "209",
        "cart_items": "3 bananas, 12 mangoes",
        "user_id": "usr_1001",
    }


def test_a_metadata_key_wins_over_a_custom_field_of_the_same_name() -> None:
    def both(data: dict[str, Any]) -> None:
        data["metadata"] = {
            "user_id": "direct",
            "custom_fields": [
                {"display_name": "User", "variable_name": "user_id", "value": "from-field"},
                {"display_name": "Plan", "variable_name": "plan", "value": 12},
                {"display_name": "Nested", "variable_name": "nested", "value": {"a": 1}},
                {"display_name": "No name", "value": "x"},
                "not an object",
            ],
            "flag": True,
            "nested": {"skipped": "yes"},
            "none": None,
        }

    event = parse_one(edited("charge_success.json", both))
    assert event.customer.metadata == {"user_id": "direct", "plan": "12", "flag": "true"}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (0, {}),
        ("", {}),
        (None, {}),
        ([1, 2], {}),
        ('{"user_id": "usr_7", "custom_fields": []}', {"user_id": "usr_7"}),
        ('{"user_id": ', {}),
        ("plain text", {}),
    ],
)
def test_metadata_is_read_defensively(metadata: Any, expected: dict[str, str]) -> None:
    event = parse_one(edited("charge_success.json", lambda d: d.update(metadata=metadata)))
    assert event.customer.metadata == expected


def test_subscription_charge_carries_the_plan() -> None:
    plan = {"id": 67572, "name": "Monthly retainer", "plan_code": "PLN_gx2wn530m0i3w3m", "interval": "monthly"}
    event = parse_one(edited("charge_success.json", lambda d: d.update(plan=plan)))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == CHARGE
    assert event.product_id == "PLN_gx2wn530m0i3w3m"
    assert event.product_type == "subscription"


def test_subscription_charge_is_counted_once() -> None:
    # trap 3: a subscription charge is charge.success + invoice.update; only the charge books it
    charge = parse_one(edited("charge_success.json", lambda d: d.update(plan={"plan_code": "PLN_x"})))
    invoice = parse_one(fixture("invoice_update.json"))  # doc-code-snippets `invoice_updated`, faithful
    assert charge.kind is EventKind.SALE
    assert invoice.kind is EventKind.IGNORED
    assert invoice.reason is not None and "charge.success" in invoice.reason


def test_same_charge_announced_twice_has_one_key() -> None:
    first = parse_one(fixture("charge_success.json"))
    again = parse_one(fixture("charge_success_custom_fields.json"))
    assert first.transaction_key == again.transaction_key == CHARGE


def test_large_integer_ids_stay_exact_strings() -> None:
    def huge(data: dict[str, Any]) -> None:
        data["reference"] = 9007199254740993  # 2^53 + 1: a float would make it ...992
        data["customer"] = {"id": 18446744073709551617, "email": "a@b.c"}

    event = parse_one(edited("charge_success.json", huge))
    assert event.transaction_key == "paystack:ref:9007199254740993"
    assert event.customer.customer_id == "18446744073709551617"


@pytest.mark.parametrize(("currency", "amount"), [("GHS", "100.00"), ("ZAR", "100.00"), ("KES", "100.00")])
def test_other_currencies_use_their_subunits(currency: str, amount: str) -> None:
    event = parse_one(edited("charge_success.json", lambda d: d.update(currency=currency.lower())))
    assert event.currency == currency
    assert event.amount == Decimal(amount)


def test_unsuccessful_or_empty_charges_are_ignored() -> None:
    failed = parse_one(edited("charge_success.json", lambda d: d.update(status="failed")))
    assert failed.kind is EventKind.IGNORED
    assert failed.reason is not None and "failed" in failed.reason
    free = parse_one(edited("charge_success.json", lambda d: d.update(amount=0)))
    assert free.kind is EventKind.IGNORED


# --- refunds and disputes ------------------------------------------------------------------------


def test_refund_processed_reports_this_refund() -> None:
    # doc-code-snippets webhooks/events.js `refund_processed`, faithful: amount "5000" is a string
    event = parse_one(fixture("refund_processed.json"))
    assert event.kind is EventKind.REFUND
    assert event.event_type == "refund.processed"
    assert event.transaction_key == "paystack:ref:T2154954_412829_3be32076_6lcg3"
    assert event.amount == Decimal("50.00")
    assert event.currency == "NGN"
    assert event.refund_id == "132013318360"
    assert event.refunded_total is None
    assert event.full_refund is None  # the payload has no sale total; the ledger compares
    assert event.customer.email == "damilola@email.com"
    assert event.test_mode is False


def test_full_refund_shares_the_sale_key() -> None:
    # refund_processed.json aligned with charge_success.json (SOURCES.md)
    sale = parse_one(fixture("charge_success.json"))
    refund = parse_one(fixture("refund_processed_full.json"))
    assert refund.transaction_key == sale.transaction_key == CHARGE
    assert refund.amount == sale.amount == Decimal("100.00")


@pytest.mark.parametrize("amount", [20000, "20000", " 20000 ", Decimal("20000")])
def test_refund_amount_as_number_or_string(amount: Any) -> None:
    event = parse_one(edited("refund_processed.json", lambda d: d.update(amount=amount)))
    assert event.amount == Decimal("200.00")


def test_refund_without_reference_has_no_refund_id() -> None:
    event = parse_one(edited("refund_processed.json", lambda d: d.update(refund_reference=None)))
    assert event.refund_id is None
    with_id = parse_one(edited("refund_processed.json", lambda d: d.update(refund_reference=None, id=1234567)))
    assert with_id.refund_id == "1234567"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("refund_pending.json", "refund.processed follows"),
        ("refund_failed.json", "did not go through"),
        ("subscription_create.json", "charge.success"),
        ("invoice_update.json", "charge.success"),
    ],
)
def test_official_samples_not_acted_on_are_ignored(name: str, reason: str) -> None:
    # doc-code-snippets webhooks/events.js, faithful
    event = parse_one(fixture(name))
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and reason in event.reason


def test_dispute_create_opens_a_dispute_on_the_charge() -> None:
    # doc-code-snippets `charge_dispute_create`, faithful: transaction_reference is null
    event = parse_one(fixture("charge_dispute_create.json"))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is DisputeState.OPENED
    assert event.transaction_key == "paystack:ref:v3mjfgbnc19v97x"
    assert event.amount == Decimal("58.00")
    assert event.sale_amount == Decimal("58.00")
    assert event.currency == "NGN"
    assert event.customer.email == "example@test.com"
    assert event.test_mode is False


def test_dispute_resolve_auto_accepted_is_lost() -> None:
    # doc-code-snippets `charge_dispute_resolve`, faithful
    event = parse_one(fixture("charge_dispute_resolve.json"))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is DisputeState.LOST
    assert event.transaction_key == "paystack:ref:5qm4pv2mxs9rltp"
    assert event.amount == Decimal("57.00")
    assert event.reason == "resolution: auto-accepted"
    assert event.occurred_at == datetime(2020, 11, 24, 14, 0, 2, tzinfo=UTC)


def test_dispute_outcome_is_reported() -> None:
    assert PaystackAdapter.reports_dispute_outcome is True


@pytest.mark.parametrize(
    ("resolution", "transaction_status", "state"),
    [
        ("merchant-accepted", "success", DisputeState.LOST),
        ("auto-accepted", "reversed", DisputeState.LOST),
        ("declined", "success", DisputeState.WON),
        ("something-new", "reversed", DisputeState.LOST),
    ],
)
def test_dispute_resolutions(resolution: str, transaction_status: str, state: DisputeState) -> None:
    def resolve(data: dict[str, Any]) -> None:
        data["resolution"] = resolution
        data["transaction"]["status"] = transaction_status

    event = parse_one(edited("charge_dispute_resolve.json", resolve))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is state


def test_unknown_resolution_on_a_standing_charge_is_ignored() -> None:
    def resolve(data: dict[str, Any]) -> None:
        data["resolution"] = "something-new"
        data["transaction"]["status"] = "success"

    event = parse_one(edited("charge_dispute_resolve.json", resolve))
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and "something-new" in event.reason


def test_dispute_remind_is_ignored() -> None:
    body = fixture("charge_dispute_create.json").replace(b"charge.dispute.create", b"charge.dispute.remind")
    event = parse_one(body)
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and "charge.dispute.create" in event.reason


def test_dispute_falls_back_to_transaction_reference() -> None:
    def flat(data: dict[str, Any]) -> None:
        data["transaction"] = {}
        data["transaction_reference"] = "v3mjfgbnc19v97x"

    event = parse_one(edited("charge_dispute_create.json", flat))
    assert event.transaction_key == "paystack:ref:v3mjfgbnc19v97x"
    assert event.sale_amount is None


def test_test_domain_dispute_is_test_mode() -> None:
    event = parse_one(edited("charge_dispute_create.json", lambda d: d.update(domain="test")))
    assert event.test_mode is True


@pytest.mark.parametrize(
    "event_type", ["subscription.expiring_cards", "transfer.success", "customeridentification.success", "x.y"]
)
def test_other_events_are_ignored_with_a_reason(event_type: str) -> None:
    # subscription.expiring_cards carries a list as `data`: ignored before data is read
    event = parse_one(json.dumps({"event": event_type, "data": []}).encode())
    assert event.kind is EventKind.IGNORED
    assert event.event_type == event_type
    assert event.reason


# --- junk ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"{}",
        b'{"event": 5, "data": {}}',
        b'{"event": "charge.success"}',
        b'{"event": "charge.success", "data": []}',
        b'{"event": "charge.success", "data": {"amount": NaN}}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_unreadable_bodies_raise_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("charge_success.json", lambda d: d.pop("reference")),
        ("charge_success.json", lambda d: d.update(reference="  ")),
        ("charge_success.json", lambda d: d.update(reference=True)),
        ("charge_success.json", lambda d: d.pop("currency")),
        ("charge_success.json", lambda d: d.update(currency="XYZ")),
        ("charge_success.json", lambda d: d.update(amount="100.00")),
        ("charge_success.json", lambda d: d.update(amount="\u0661\u0660\u0660")),
        ("charge_success.json", lambda d: d.update(amount=Decimal("100.5"))),
        ("charge_success.json", lambda d: d.update(amount=-100)),
        ("charge_success.json", lambda d: d.update(amount=True)),
        ("charge_success.json", lambda d: d.update(amount=10**20)),
        ("refund_processed.json", lambda d: d.pop("transaction_reference")),
        ("refund_processed.json", lambda d: d.update(amount="5,000")),
        ("refund_processed.json", lambda d: d.pop("currency")),
        ("charge_dispute_create.json", lambda d: d.update(transaction={})),
        ("charge_dispute_create.json", lambda d: d.update(refund_amount="lots")),
    ],
)
def test_events_acted_on_with_bad_fields_raise_payload_error(name: str, edit: Any) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(edited(name, edit)))


# --- delivery id, registry, options --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("charge_success.json", "charge.success:live:302961"),
        ("charge_success_test.json", "charge.success:test:59565"),
        ("refund_processed.json", "refund.processed:live:132013318360"),
        ("charge_dispute_create.json", "charge.dispute.create:live:358950"),
        ("charge_dispute_resolve.json", "charge.dispute.resolve:live:358949"),
    ],
)
def test_delivery_id_names_event_domain_and_object(name: str, expected: str) -> None:
    assert adapter().delivery_id(request(fixture(name))) == expected


def test_test_and_live_objects_with_one_id_are_different_deliveries() -> None:
    live = fixture("charge_success.json")
    test = live.replace(b'"domain":"live"', b'"domain":"test"')
    assert adapter().delivery_id(request(live)) != adapter().delivery_id(request(test))


@pytest.mark.parametrize("name", ["refund_pending.json", "invoice_update.json", "subscription_create.json"])
def test_delivery_id_without_an_object_id_is_the_body_hash(name: str) -> None:
    # refund_pending has `refund_reference: null`; invoices and subscriptions are not keyed
    body = fixture(name)
    assert adapter().delivery_id(request(body)) == body_hash(body)


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'{"event": "charge.success"}', b'{"event": "charge.success", "data": {"id": true}}'],
)
def test_delivery_id_falls_back_to_the_body_hash(body: bytes) -> None:
    assert adapter().delivery_id(request(body)) == body_hash(body)


def test_delivery_id_survives_deep_nesting() -> None:
    body = b"[" * 100_000
    assert adapter().delivery_id(request(body)) == body_hash(body)


def test_registry_finds_the_adapter() -> None:
    assert get_adapter_class("paystack") is PaystackAdapter


def test_options_forbid_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        PaystackAdapter.Options.model_validate({"allowed_ips": ["52.31.139.75"]})
