"""Generic `hmac` provider: RFC vectors per hash and encoding, then Paystack reproduced through configuration.

The worked example of docs/providers/hmac_generic.md is tested here: Paystack's own sample payloads,
verified and parsed by the generic adapter with nothing but endpoint settings, give the key, amount,
currency and email the Paystack reference sheet prescribes (computed by hand from each payload).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError, parse_config
from bridge.events import DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import PayloadError, SignatureError, WebhookRequest, body_hash
from providers.hmac_generic import HmacAdapter, HmacOptions

FIXTURES = Path(__file__).parent / "fixtures" / "hmac"
SECRET = "sk_live_0123456789abcdef0123456789abcdef01234567"
OLD_SECRET = "sk_live_fedcba9876543210fedcba9876543210fedcba98"
NOW = 1_700_000_000.0

# The worked example: Paystack through configuration (reference/providers/paystack.md, Signature/Fields)
PAYSTACK: dict[str, Any] = {
    "header": "x-paystack-signature",
    "algorithm": "sha512",
    "encoding": "hex",
    "key_prefix": "paystack:ref",
    "fields": {
        "event_type": "event",
        "transaction_id": "data.reference",
        "amount": "data.amount",
        "amount_unit": "minor",
        "currency": "data.currency",
        "email": "data.customer.email",
        "customer_id": "data.customer.customer_code",
        "metadata": "data.metadata",
        "product_id": "data.plan.plan_code",
        "occurred_at": "data.paid_at",
        "test_flag": "data.domain",
        "test_values": ["test"],
        "refund_target_id": "data.transaction_reference",
        "refund_amount": "data.amount",
        "refund_id": "data.refund_reference",
        "dispute_target_id": "data.transaction.reference",
        "dispute_amount": "data.refund_amount",
        "dispute_state": "data.resolution",
    },
    "events": {
        "sale": ["charge.success"],
        "refund": ["refund.processed"],
        "dispute_opened": ["charge.dispute.create"],
        "dispute": ["charge.dispute.resolve"],
    },
    "dispute_states": {"lost": ["merchant-accepted", "auto-accepted"], "won": ["declined", "auto-declined"]},
}

# the smallest map, for signature tests that do not care about the payload
PLAIN: dict[str, Any] = {
    "header": "x-signature",
    "fields": {"transaction_id": "id", "amount": "amount", "currency": "currency"},
    "events": {"sale": ["sale"]},
}


def adapter(*secrets: str, settings: dict[str, Any] | None = None, **extra: Any) -> HmacAdapter:
    return HmacAdapter(secrets or (SECRET,), HmacOptions.model_validate({**(settings or PAYSTACK), **extra}))


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def signed(
    body: bytes, secret: str = SECRET, settings: dict[str, Any] | None = None, now: float = NOW, **extra: Any
) -> WebhookRequest:
    return request(body, adapter(secret, settings=settings, **extra).sign(body, secret, now).headers)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse_one(body: bytes, settings: dict[str, Any] | None = None) -> NormalizedEvent:
    events = adapter(settings=settings).parse(request(body))
    assert len(events) == 1
    return events[0]


def config_problems(settings: dict[str, Any]) -> str:
    endpoint = {"provider": "hmac", "secret": SECRET, **settings}
    with pytest.raises(ConfigError) as info:
        parse_config({"endpoints": {"shop": endpoint}})
    return str(info.value)


# --- signature: published vectors ------------------------------------------------------------------
# RFC 4231 test cases 1 and 2 (HMAC-SHA256/512) and RFC 2202 test cases 1 and 2 (HMAC-SHA1, same
# inputs). The hex values are the RFCs'; the base64 values are those same digests base64-encoded.

CASE_1 = ("\x0b" * 20, b"Hi There")
CASE_2 = ("Jefe", b"what do ya want for nothing?")
VECTORS = [
    (CASE_1, "sha1", "b617318655057264e28bc0b6fb378c8ef146be00"),
    (CASE_2, "sha1", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    (CASE_1, "sha256", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (CASE_2, "sha256", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (
        CASE_1,
        "sha512",
        "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
        "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
    ),
    (
        CASE_2,
        "sha512",
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
    ),
]


@pytest.mark.parametrize(("case", "algorithm", "hex_digest"), VECTORS)
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_rfc_vectors_sign_and_verify(case: tuple[str, bytes], algorithm: str, hex_digest: str, encoding: str) -> None:
    key, data = case
    expected = hex_digest if encoding == "hex" else base64.b64encode(bytes.fromhex(hex_digest)).decode()
    generic = adapter(key, settings=PLAIN, algorithm=algorithm, encoding=encoding)
    headers = generic.sign(data, key, NOW).headers
    assert headers == {"x-signature": expected}
    generic.verify(request(data, {"x-signature": expected}), NOW)


def test_sha512_base64_of_rfc4231_case_2_spelled_out() -> None:
    value = "Fkt6e/z4GeLjlfvnO1bgo4e9ZCIugx/WECcM1+olBVSXWL91wFqZSm0DT2X48Ob9yuqxo01Ka0tjbgcKOLznNw=="
    adapter("Jefe", settings=PLAIN, algorithm="sha512", encoding="base64").verify(
        request(CASE_2[1], {"x-signature": value}), NOW
    )


def test_one_algorithm_does_not_verify_another() -> None:
    sha1_hex = VECTORS[1][2]
    with pytest.raises(SignatureError, match="x-signature does not match"):
        adapter("Jefe", settings=PLAIN, algorithm="sha256").verify(request(CASE_2[1], {"x-signature": sha1_hex}), NOW)


def test_upper_case_hex_is_the_same_digest() -> None:
    upper = VECTORS[3][2].upper()
    adapter("Jefe", settings=PLAIN).verify(request(CASE_2[1], {"x-signature": upper}), NOW)


# --- signature: prefix, timestamp scheme, failures, rotation -----------------------------------------

BODY = b'{"type": "sale", "id": "p1", "amount": 100, "currency": "USD"}'


def test_prefix_is_written_and_required() -> None:
    with_prefix = {**PLAIN, "prefix": "sha256="}
    genuine = signed(BODY, settings=with_prefix)
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert genuine.headers == {"x-signature": "sha256=" + digest}
    adapter(settings=with_prefix).verify(genuine, NOW)
    for value in (digest, "sha1=" + digest, "SHA256=" + digest):
        with pytest.raises(SignatureError, match="malformed x-signature"):
            adapter(settings=with_prefix).verify(request(BODY, {"x-signature": value}), NOW)


TIMESTAMPED = {**PLAIN, "signed_bytes": "timestamp_body", "timestamp_header": "X-Timestamp"}


def test_timestamp_body_signs_timestamp_separator_body() -> None:
    headers = signed(BODY, settings=TIMESTAMPED).headers
    assert headers["x-timestamp"] == "1700000000"
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert headers["x-signature"] == expected
    adapter(settings=TIMESTAMPED).verify(request(BODY, dict(headers)), NOW)


def test_separator_option() -> None:
    colon = {**TIMESTAMPED, "separator": ":"}
    headers = signed(BODY, settings=colon).headers
    expected = hmac.new(SECRET.encode(), b"1700000000:" + BODY, hashlib.sha256).hexdigest()
    assert headers["x-signature"] == expected
    with pytest.raises(SignatureError, match="does not match"):
        adapter(settings=TIMESTAMPED).verify(request(BODY, dict(headers)), NOW)


def test_timestamp_is_part_of_the_signature() -> None:
    headers = {**signed(BODY, settings=TIMESTAMPED).headers, "x-timestamp": "1700000001"}
    with pytest.raises(SignatureError, match="x-signature does not match"):
        adapter(settings=TIMESTAMPED).verify(request(BODY, headers), NOW)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_within_tolerance(skew: int) -> None:
    adapter(settings=TIMESTAMPED).verify(signed(BODY, settings=TIMESTAMPED), NOW + skew)


@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamp_outside_tolerance(skew: int) -> None:
    with pytest.raises(SignatureError, match="timestamp outside tolerance"):
        adapter(settings=TIMESTAMPED).verify(signed(BODY, settings=TIMESTAMPED), NOW + skew)


def test_tolerance_option() -> None:
    wide = {**TIMESTAMPED, "tolerance_seconds": 900}
    adapter(settings=wide).verify(signed(BODY, settings=wide), NOW + 899)
    with pytest.raises(SignatureError, match="timestamp"):
        adapter(settings=wide).verify(signed(BODY, settings=wide), NOW + 901)


@pytest.mark.parametrize(("value", "message"), [(None, "missing x-timestamp"), ("12:00", "malformed x-timestamp")])
def test_bad_timestamp_header(value: str | None, message: str) -> None:
    headers = dict(signed(BODY, settings=TIMESTAMPED).headers)
    if value is None:
        del headers["x-timestamp"]
    else:
        headers["x-timestamp"] = value
    with pytest.raises(SignatureError, match=message):
        adapter(settings=TIMESTAMPED).verify(request(BODY, headers), NOW)


def test_body_only_scheme_has_no_tolerance() -> None:
    adapter(settings=PLAIN).verify(signed(BODY, settings=PLAIN), NOW + 10 * 365 * 86400)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureError, match="x-signature does not match"):
        adapter(OLD_SECRET, settings=PLAIN).verify(signed(BODY, settings=PLAIN), NOW)


def test_missing_header_is_rejected() -> None:
    with pytest.raises(SignatureError, match="missing x-signature"):
        adapter(settings=PLAIN).verify(request(BODY), NOW)


def test_tampered_body_is_rejected() -> None:
    genuine = signed(BODY, settings=PLAIN)
    with pytest.raises(SignatureError, match="does not match"):
        adapter(settings=PLAIN).verify(request(BODY.replace(b"100", b"900"), dict(genuine.headers)), NOW)


@pytest.mark.parametrize("value", ["not-hex", "abc", "zz" * 32, "   "])
def test_malformed_signature_is_rejected(value: str) -> None:
    with pytest.raises(SignatureError):
        adapter(settings=PLAIN).verify(request(BODY, {"x-signature": value}), NOW)


def test_base64_encoding_refuses_hex() -> None:
    hex_value = signed(BODY, settings=PLAIN).headers["x-signature"]
    with pytest.raises(SignatureError):
        adapter(settings=PLAIN, encoding="base64").verify(request(BODY, {"x-signature": hex_value}), NOW)


def test_rotation_either_secret_verifies() -> None:
    both = adapter(SECRET, OLD_SECRET, settings=PLAIN)
    both.verify(signed(BODY, SECRET, settings=PLAIN), NOW)
    both.verify(signed(BODY, OLD_SECRET, settings=PLAIN), NOW)


def test_registered_as_hmac_without_shadowing_the_standard_library() -> None:
    assert get_adapter_class("hmac") is HmacAdapter
    assert "providers" not in (hmac.__file__ or "")


# --- the worked example: Paystack through configuration ----------------------------------------------
# Samples: PaystackOSS/doc-code-snippets@25d620922afea9dee8f1de430e39ec1fca44c746
# dist/doc/payments/webhooks/events.js (rendered at https://paystack.com/docs/payments/webhooks/)

PAYSTACK_SALE = fixture("paystack_charge_success.json")


def test_paystack_signature_is_hex_hmac_sha512_of_the_body() -> None:
    # events.js `transaction_successful`, signed the way Paystack documents it
    expected = hmac.new(SECRET.encode(), PAYSTACK_SALE, hashlib.sha512).hexdigest()
    headers = adapter().sign(PAYSTACK_SALE, SECRET, NOW).headers
    assert headers == {"x-paystack-signature": expected}
    adapter().verify(request(PAYSTACK_SALE, {"x-paystack-signature": expected}), NOW)
    with pytest.raises(SignatureError):
        adapter().verify(request(PAYSTACK_SALE + b"\n", {"x-paystack-signature": expected}), NOW)


def test_paystack_charge_success_matches_the_dedicated_mapping() -> None:
    # events.js `transaction_successful`: reference qTPrJoy9Bx, amount 10000 kobo, NGN, domain live
    events = adapter().parse(signed(PAYSTACK_SALE))
    assert len(events) == 1
    event = events[0]
    assert event.kind is EventKind.SALE
    assert event.event_type == "charge.success"
    assert event.transaction_key == "paystack:ref:qTPrJoy9Bx"
    assert event.amount == Decimal("100.00") and str(event.amount) == "100.00"
    assert event.currency == "NGN"
    assert event.customer.email == "bojack@horseman.com"
    assert event.customer.customer_id == "CUS_qo38as2hpsgk2r0"
    # `metadata: 0` in the sample: no metadata, no error
    assert dict(event.customer.metadata) == {}
    # `plan: {}`: a one-off charge
    assert event.product_id is None
    assert event.test_mode is False
    assert event.occurred_at is not None and event.occurred_at.isoformat() == "2016-09-30T21:10:19+00:00"


def test_paystack_test_domain_is_test_mode() -> None:
    # events.js `transaction_successful` with data.domain "test" (see SOURCES.md)
    event = parse_one(fixture("paystack_charge_success_test.json"))
    assert event.test_mode is True
    assert event.transaction_key == "paystack:ref:qTPrJoy9Bx"


def test_paystack_refund_processed_is_a_refund_of_the_charge() -> None:
    # events.js `refund_processed`: amount is the string "5000"
    event = parse_one(fixture("paystack_refund_processed.json"))
    assert event.kind is EventKind.REFUND
    assert event.transaction_key == "paystack:ref:T2154954_412829_3be32076_6lcg3"
    assert event.amount == Decimal("50.00")
    assert event.currency == "NGN"
    assert event.refund_id == "132013318360"
    assert event.refunded_total is None and event.full_refund is None
    assert event.customer.email == "damilola@email.com"
    assert event.test_mode is False


def test_paystack_full_refund_of_the_sample_charge() -> None:
    # events.js `refund_processed` aligned with `transaction_successful` (see SOURCES.md)
    event = parse_one(fixture("paystack_refund_processed_full.json"))
    assert event.transaction_key == "paystack:ref:qTPrJoy9Bx"
    assert event.amount == Decimal("100.00")


def test_paystack_dispute_create_opens_a_dispute_on_the_charge() -> None:
    # events.js `charge_dispute_create`: the charge reference is data.transaction.reference
    event = parse_one(fixture("paystack_charge_dispute_create.json"))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is DisputeState.OPENED
    assert event.transaction_key == "paystack:ref:v3mjfgbnc19v97x"
    assert event.amount == Decimal("58.00")
    assert event.currency == "NGN"
    assert event.customer.email == "example@test.com"


def test_paystack_dispute_resolve_auto_accepted_is_lost() -> None:
    # events.js `charge_dispute_resolve`: resolution "auto-accepted", transaction status "reversed"
    event = parse_one(fixture("paystack_charge_dispute_resolve.json"))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is DisputeState.LOST
    assert event.transaction_key == "paystack:ref:5qm4pv2mxs9rltp"
    assert event.amount == Decimal("57.00")
    assert adapter().reports_dispute_outcome is True


@pytest.mark.parametrize(
    ("name", "event_type"),
    [("paystack_invoice_update.json", "invoice.update"), ("paystack_refund_failed.json", "refund.failed")],
)
def test_paystack_events_not_listed_are_ignored(name: str, event_type: str) -> None:
    # events.js `invoice_updated` (its money is in charge.success) and `refund_failed`
    event = parse_one(fixture(name))
    assert event.kind is EventKind.IGNORED
    assert event.event_type == event_type
    assert event.reason == "event type not listed in the endpoint's events"


def test_paystack_metadata_object_is_flattened() -> None:
    # events.js `transaction_successful` with the metadata a checkout passes (paystack.md, Fields)
    payload = json.loads(PAYSTACK_SALE, parse_float=Decimal)
    payload["data"]["metadata"] = {"user_id": 123, "custom_fields": [{"variable_name": "user_id", "value": "123"}]}
    event = parse_one(json.dumps(payload, default=str).encode())
    assert dict(event.customer.metadata) == {"user_id": "123"}


def test_paystack_sale_with_bad_fields_raises_payload_error() -> None:
    # events.js `transaction_successful`, broken on purpose
    for old, new in ((b'"reference":"qTPrJoy9Bx"', b'"reference":null'), (b'"amount":10000', b'"amount":"lots"')):
        with pytest.raises(PayloadError, match=r"^charge\.success: "):
            adapter().parse(request(PAYSTACK_SALE.replace(old, new)))


@pytest.mark.parametrize("junk", [b"", b"not json", b"\xff", b"[1, 2]", b'{"data": {}}', b"{" * 50_000])
def test_junk_bodies_raise_payload_error(junk: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(junk))


# --- delivery id --------------------------------------------------------------------------------------


def test_delivery_id_defaults_to_the_body_hash() -> None:
    # Paystack sends no delivery id
    assert adapter().delivery_id(signed(PAYSTACK_SALE)) == body_hash(PAYSTACK_SALE)


def test_delivery_id_from_a_header() -> None:
    settings = {**PLAIN, "delivery_id_header": "X-Event-Id"}
    assert adapter(settings=settings).delivery_id(request(BODY, {"x-event-id": " evt_1 "})) == "evt_1"
    assert adapter(settings=settings).delivery_id(request(BODY)) == body_hash(BODY)
    # sign() sends one, so simulated deliveries dedup like real ones
    headers = signed(BODY, settings=settings).headers
    assert headers["x-event-id"].startswith("dlv_")


def test_delivery_id_from_a_body_path() -> None:
    settings = {**PLAIN, "delivery_id_path": "data.id"}
    paystack_like = b'{"event": "charge.success", "data": {"id": 302961}}'
    assert adapter(settings=settings).delivery_id(request(paystack_like)) == "302961"


@pytest.mark.parametrize("junk", [b"", b"\xff", b"[" * 100_000, b'{"data": []}', b'{"data": {"id": true}}'])
def test_delivery_id_path_never_raises(junk: bytes) -> None:
    settings = {**PLAIN, "delivery_id_path": "data.id"}
    assert adapter(settings=settings).delivery_id(request(junk)) == body_hash(junk)


def test_header_beats_path_for_the_delivery_id() -> None:
    settings = {**PLAIN, "delivery_id_header": "x-event-id", "delivery_id_path": "id"}
    assert adapter(settings=settings).delivery_id(request(BODY, {"x-event-id": "evt_h"})) == "evt_h"
    assert adapter(settings=settings).delivery_id(request(BODY)) == "p1"


# --- configuration ----------------------------------------------------------------------------------------


def without(settings: dict[str, Any], key: str) -> dict[str, Any]:
    changed = copy.deepcopy(settings)
    del changed[key]
    return changed


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (without(PAYSTACK, "header"), "endpoints.shop.header: required"),
        ({**PAYSTACK, "header": "x signature"}, "is not an HTTP header name"),
        ({**PAYSTACK, "algorithm": "md5"}, "endpoints.shop.algorithm"),
        ({**PAYSTACK, "encoding": "base32"}, "endpoints.shop.encoding"),
        ({**PAYSTACK, "signed_bytes": "timestamp_body"}, "signed_bytes: timestamp_body needs timestamp_header"),
        ({**PAYSTACK, "timestamp_header": "x-ts"}, "timestamp_header is only read with signed_bytes: timestamp_body"),
        ({**PAYSTACK, "tolerance_seconds": 0}, "endpoints.shop.tolerance_seconds"),
        ({**PAYSTACK, "delivery_id_path": "data..id"}, "is not a dot path"),
        ({**PAYSTACK, "secret_header": "x"}, "endpoints.shop.secret_header: unknown setting"),
    ],
)
def test_config_errors_are_clear(settings: dict[str, Any], message: str) -> None:
    assert message in config_problems(settings)


def test_header_names_are_lower_cased() -> None:
    options = HmacOptions.model_validate({**TIMESTAMPED, "header": "X-Paystack-Signature"})
    assert (options.header, options.timestamp_header) == ("x-paystack-signature", "x-timestamp")


def test_worked_example_loads_from_the_endpoint_settings() -> None:
    endpoint = {"provider": "hmac", "secret": SECRET, "customer_key": ["metadata.user_id", "email"], **PAYSTACK}
    loaded = parse_config({"endpoints": {"paystack": endpoint}}).endpoints["paystack"]
    assert isinstance(loaded.adapter, HmacAdapter)
    genuine = signed(PAYSTACK_SALE)
    loaded.adapter.verify(genuine, NOW)
    assert loaded.adapter.parse(genuine)[0].transaction_key == "paystack:ref:qTPrJoy9Bx"


def test_e2e_settings_are_the_worked_example() -> None:
    spec = json.loads((FIXTURES / "e2e.json").read_text())
    mapping = {k: v for k, v in spec["endpoint"].items() if k != "customer_key"}
    assert mapping == PAYSTACK


@pytest.mark.parametrize("value", ["9" * 13, "9" * 400, "1" + "0" * 5000])
def test_absurd_timestamps_are_refused(value: str) -> None:
    headers = {**signed(BODY, settings=TIMESTAMPED).headers, "x-timestamp": value}
    with pytest.raises(SignatureError, match="malformed x-timestamp"):
        adapter(settings=TIMESTAMPED).verify(request(BODY, headers), NOW)


# --- refunds reported as negative amounts --------------------------------------------------------------

PAYPAL_V1: dict[str, Any] = {
    "header": "x-signature",
    "fields": {
        "event_type": "event_type",
        "transaction_id": "resource.sale_id",
        "amount": "resource.amount.total",
        "amount_unit": "major",
        "currency": "resource.amount.currency",
        "refund_amount": "resource.amount.total",
        "refund_id": "resource.id",
    },
    "events": {"sale": ["PAYMENT.SALE.COMPLETED"], "refund": ["PAYMENT.SALE.REFUNDED"]},
}


def test_a_refund_reported_as_a_negative_amount_is_read_as_money_back() -> None:
    # a real PayPal v1 PAYMENT.SALE.REFUNDED (tests/fixtures/paypal/live_sale_refunded.json, SOURCES.md
    # there): "amount": {"total": "-0.01", "currency": "USD"}
    body = (FIXTURES.parent / "paypal" / "live_sale_refunded.json").read_bytes()
    event = parse_one(body, PAYPAL_V1)
    assert (event.kind, event.amount, event.refund_id) == (EventKind.REFUND, Decimal("0.01"), "6YX43824R4443062K")
    # WooCommerce's refunds carry a negative `total` as a JSON number
    negative = json.dumps(
        {
            "event_type": "PAYMENT.SALE.REFUNDED",
            "resource": {"id": "r", "sale_id": "s", "amount": {"total": -5, "currency": "EUR"}},
        }
    ).encode()
    assert parse_one(negative, PAYPAL_V1).amount == Decimal("5.00")


def test_a_sale_still_refuses_a_negative_amount() -> None:
    body = json.dumps({"type": "sale", "id": "p1", "amount": -100, "currency": "USD"}).encode()
    with pytest.raises(PayloadError, match="not a non-negative amount"):
        adapter(settings=PLAIN).parse(request(body))


def test_a_mapped_tax_is_the_tax_inside_the_amount() -> None:
    settings = {**PLAIN, "fields": {**PLAIN["fields"], "tax": "tax"}}
    body = json.dumps({"type": "sale", "id": "p1", "amount": 1210, "tax": 210, "currency": "EUR"}).encode()
    event = parse_one(body, settings)
    assert (event.amount, event.tax) == (Decimal("12.10"), Decimal("2.10"))
