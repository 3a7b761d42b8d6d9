"""Generic Standard Webhooks adapter: spec vectors first, then the configured field map on real payloads.

The payloads are Dodo Payments' and Polar's (both sign with Standard Webhooks) read through endpoint
settings alone, plus the spec's own example; the shared field-map rules (paths, validation) live here.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from pydantic import ValidationError

from bridge.config import ConfigError, parse_config
from bridge.events import DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers._fields import lookup, text_at
from providers.base import PayloadError, SignatureError, WebhookRequest, body_hash
from providers.signatures import sign_standard_webhook, standard_webhook_key
from providers.standardwebhooks import StandardWebhooksAdapter, StandardWebhooksOptions

FIXTURES = Path(__file__).parent / "fixtures" / "standardwebhooks"

# Standard Webhooks sign vector: standard-webhooks/standard-webhooks@b2fa7b8719fb75d326b591077f5d1b385cfcdfae
# libraries/python/tests/test_webhooks.py::test_sign_function
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# the same inputs with the key = UTF-8 bytes of the whole secret (Polar legacy, Whop): computed from the
# official inputs, not published by a provider (reference/providers/standardwebhooks.md)
VECTOR_RAW_KEY_SIGNATURE = "v1,TcxlhK9b6UD6iVI1ZU2tTqp8PEVfYRseNNfa6b+LcUg="

SECRET = VECTOR_SECRET
OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MjQy"
NOW = 1_754_285_445.0

# Dodo Payments reproduced through configuration (reference/providers/dodopayments.md, Fields)
DODO_MAP: dict[str, Any] = {
    "key_prefix": "dodo:pay",
    "fields": {
        "event_type": "type",
        "transaction_id": "data.payment_id",
        "amount": "data.total_amount",
        "amount_unit": "minor",
        "currency": "data.currency",
        "email": "data.customer.email",
        "customer_id": "data.customer.customer_id",
        "name": "data.customer.name",
        "metadata": "data.metadata",
        "product_id": "data.product_cart.0.product_id",
        "occurred_at": "timestamp",
        "refund_amount": "data.amount",
        "refund_id": "data.refund_id",
    },
    "events": {
        "sale": ["payment.succeeded"],
        "refund": ["refund.succeeded"],
        "dispute_opened": ["dispute.opened"],
        "dispute_lost": ["dispute.lost", "dispute.accepted"],
        "dispute_won": ["dispute.won"],
    },
}

# Polar reproduced through configuration: net amounts on both sides, since the generic map cannot add
# Polar's separate tax fields (reference/providers/polar.md, Fields)
POLAR_MAP: dict[str, Any] = {
    "key_prefix": "polar:order",
    "fields": {
        "transaction_id": "data.id",
        "amount": "data.net_amount",
        "currency": "data.currency",
        "email": "data.customer.email",
        "customer_id": "data.customer_id",
        "external_id": "data.customer.external_id",
        "name": "data.customer.name",
        "metadata": "data.metadata",
        "product_id": "data.product_id",
        "refunded_total": "data.refunded_amount",
        "sale_amount": "data.net_amount",
    },
    "events": {"sale": ["order.paid"], "refund": ["order.refunded"]},
}


def options(settings: dict[str, Any] | None = None, **extra: Any) -> StandardWebhooksOptions:
    return StandardWebhooksOptions.model_validate({**(settings or DODO_MAP), **extra})


def adapter(*secrets: str, settings: dict[str, Any] | None = None, **extra: Any) -> StandardWebhooksAdapter:
    return StandardWebhooksAdapter(secrets or (SECRET,), options(settings, **extra))


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def signed(body: bytes, secret: str = SECRET, now: float = NOW, **extra: Any) -> WebhookRequest:
    return request(body, adapter(secret, **extra).sign(body, secret, now).headers)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def edited(name: str, edit: Any) -> bytes:
    payload = json.loads(fixture(name), parse_float=Decimal)
    edit(payload)
    return json.dumps(payload, default=str).encode()


def parse_one(body: bytes, settings: dict[str, Any] | None = None, **extra: Any) -> NormalizedEvent:
    events = adapter(settings=settings, **extra).parse(request(body))
    assert len(events) == 1
    return events[0]


def with_fields(settings: dict[str, Any], **fields: Any) -> dict[str, Any]:
    changed = copy.deepcopy(settings)
    for name, value in fields.items():
        if value is None:
            changed["fields"].pop(name, None)
        else:
            changed["fields"][name] = value
    return changed


def config_problems(settings: dict[str, Any]) -> str:
    endpoint = {"provider": "standardwebhooks", "secret": SECRET, **settings}
    with pytest.raises(ConfigError) as info:
        parse_config({"endpoints": {"shop": endpoint}})
    return str(info.value)


# --- signature: published vectors --------------------------------------------------------------------


def vector_headers(signature: str = VECTOR_SIGNATURE) -> dict[str, str]:
    return {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP), "webhook-signature": signature}


def test_standard_webhooks_vector_verifies_with_the_base64_key() -> None:
    adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers()), now=VECTOR_TIMESTAMP)


def test_sign_matches_the_vector_inputs() -> None:
    # sign() picks its own message id; signed with the vector's id the scheme gives the vector's value
    key = standard_webhook_key(VECTOR_SECRET)
    assert sign_standard_webhook(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    headers = adapter().sign(VECTOR_BODY, VECTOR_SECRET, VECTOR_TIMESTAMP).headers
    assert headers["webhook-timestamp"] == str(VECTOR_TIMESTAMP)
    expected = sign_standard_webhook(key, headers["webhook-id"], VECTOR_TIMESTAMP, VECTOR_BODY)
    assert headers["webhook-signature"] == expected


def test_standard_webhooks_vector_verifies_without_the_whsec_prefix() -> None:
    bare = VECTOR_SECRET.removeprefix("whsec_")
    adapter(bare).verify(request(VECTOR_BODY, vector_headers()), now=VECTOR_TIMESTAMP)


def test_standard_webhooks_vector_with_one_wrong_character_is_rejected() -> None:
    wrong = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
    with pytest.raises(SignatureError, match="does not match"):
        adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers(wrong)), now=VECTOR_TIMESTAMP)


def test_raw_key_encoding_vector_verifies() -> None:
    raw = adapter(VECTOR_SECRET, key_encoding="raw")
    raw.verify(request(VECTOR_BODY, vector_headers(VECTOR_RAW_KEY_SIGNATURE)), now=VECTOR_TIMESTAMP)


def test_key_encodings_do_not_accept_each_other() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        adapter(VECTOR_SECRET, key_encoding="raw").verify(
            request(VECTOR_BODY, vector_headers(VECTOR_SIGNATURE)), now=VECTOR_TIMESTAMP
        )
    with pytest.raises(SignatureError, match="does not match"):
        adapter(VECTOR_SECRET).verify(
            request(VECTOR_BODY, vector_headers(VECTOR_RAW_KEY_SIGNATURE)), now=VECTOR_TIMESTAMP
        )


def test_multiple_signatures_any_v1_entry_may_match() -> None:
    # the library suite's "v1,<bad> v2,<other> v1,<good> v1,<bad>" case
    header = f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc {VECTOR_SIGNATURE} v1,AAAA"
    adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, vector_headers(header)), now=VECTOR_TIMESTAMP)


def test_svix_headers_are_accepted() -> None:
    headers = {
        "svix-id": VECTOR_ID,
        "svix-timestamp": str(VECTOR_TIMESTAMP),
        "svix-signature": VECTOR_SIGNATURE,
    }
    adapter(VECTOR_SECRET).verify(request(VECTOR_BODY, headers), now=VECTOR_TIMESTAMP)


# --- signature: round trip, failures, rotation, tolerance -------------------------------------------

SALE = fixture("dodo_payment_succeeded.json")


@pytest.mark.parametrize("encoding", ["base64", "raw"])
def test_sign_verify_round_trip(encoding: str) -> None:
    genuine = signed(SALE, key_encoding=encoding)
    adapter(key_encoding=encoding).verify(genuine, now=NOW)
    assert set(genuine.headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert "." not in genuine.headers["webhook-id"]


@pytest.mark.parametrize("encoding", ["base64", "raw"])
def test_sign_agrees_with_the_standardwebhooks_library(encoding: str) -> None:
    now = time.time()
    headers = adapter(key_encoding=encoding).sign(SALE, SECRET, now).headers
    # the library's key is always base64: for the raw derivation hand it the secret's bytes base64-wrapped
    library_secret = SECRET if encoding == "base64" else base64.b64encode(SECRET.encode()).decode()
    standardwebhooks.Webhook(library_secret).verify(SALE, headers)  # raises on mismatch


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        adapter(OTHER_SECRET).verify(signed(SALE), now=NOW)


def test_tampered_body_is_rejected() -> None:
    genuine = signed(SALE)
    tampered = request(SALE.replace(b'"total_amount": 400', b'"total_amount": 40000'), dict(genuine.headers))
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(tampered, now=NOW)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(header: str) -> None:
    headers = dict(signed(SALE).headers)
    del headers[header]
    with pytest.raises(SignatureError, match=f"missing {header}"):
        adapter().verify(request(SALE, headers), now=NOW)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("webhook-timestamp", "2025-08-04T05:30:45Z"),
        ("webhook-id", "msg.with.dots"),
        ("webhook-signature", "garbage"),
        ("webhook-signature", "v1,not*base64"),
    ],
)
def test_malformed_headers_are_rejected(header: str, value: str) -> None:
    headers = {**signed(SALE).headers, header: value}
    with pytest.raises(SignatureError):
        adapter().verify(request(SALE, headers), now=NOW)


def test_rotation_either_secret_verifies() -> None:
    both = adapter(SECRET, OTHER_SECRET)
    both.verify(signed(SALE, SECRET), now=NOW)
    both.verify(signed(SALE, OTHER_SECRET), now=NOW)
    with pytest.raises(SignatureError):
        adapter(SECRET).verify(signed(SALE, OTHER_SECRET), now=NOW)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_within_default_tolerance(skew: int) -> None:
    adapter().verify(signed(SALE, now=NOW), now=NOW + skew)


@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamp_outside_default_tolerance(skew: int) -> None:
    with pytest.raises(SignatureError, match="timestamp outside tolerance"):
        adapter().verify(signed(SALE, now=NOW), now=NOW + skew)


def test_tolerance_option_widens_the_window() -> None:
    adapter(tolerance_seconds=900).verify(signed(SALE, now=NOW), now=NOW + 600)
    with pytest.raises(SignatureError, match="timestamp"):
        adapter(tolerance_seconds=900).verify(signed(SALE, now=NOW), now=NOW + 901)


def test_secret_that_is_not_base64_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="whsec_<base64>") as info:
        adapter("whsec_not*base64!")
    assert "not*base64!" not in str(info.value)
    # the same secret is a fine raw key
    adapter("whsec_not*base64!", key_encoding="raw")


def test_bad_secret_is_a_config_error_naming_the_endpoint() -> None:
    endpoint = {"provider": "standardwebhooks", "secret": "whsec_", **DODO_MAP}
    with pytest.raises(ConfigError, match=r"endpoints\.shop\.secret: standardwebhooks secret must be"):
        parse_config({"endpoints": {"shop": endpoint}})


def test_registered_under_its_name() -> None:
    assert get_adapter_class("standardwebhooks") is StandardWebhooksAdapter


# --- parse: Dodo Payments' samples through the field map ----------------------------------------------
# Samples: dodopayments/dodopayments-cli generators, see fixtures/standardwebhooks/SOURCES.md


def test_dodo_payment_succeeded_is_a_sale() -> None:
    # dodopayments-cli@3254b200 dodo-webhooks/functions/generate-payment-data.ts (genPaymentSuccess)
    event = parse_one(fixture("dodo_payment_succeeded.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "payment.succeeded"
    assert event.transaction_key == "dodo:pay:pay_test"
    assert event.amount == Decimal("4.00") and str(event.amount) == "4.00"
    assert event.currency == "USD"
    assert event.customer.email == "test@acme.com"
    assert event.customer.customer_id == "cus_test"
    assert event.customer.name == "Test user"
    assert event.customer.external_id is None
    assert dict(event.customer.metadata) == {"user_id": "usr_1001"}
    assert event.product_id == "pdt_test"
    assert event.test_mode is False
    assert event.occurred_at == datetime(2025, 8, 4, 5, 30, 45, 182000, tzinfo=UTC)


def test_default_key_prefix_is_the_provider_name() -> None:
    # dodopayments-cli@3254b200 generate-payment-data.ts (genPaymentSuccess)
    settings = {k: v for k, v in DODO_MAP.items() if k != "key_prefix"}
    event = parse_one(fixture("dodo_payment_succeeded.json"), settings)
    assert event.transaction_key == "standardwebhooks:pay_test"


def test_dodo_refund_succeeded_is_a_refund_of_the_same_payment() -> None:
    # dodopayments-cli@3254b200 dodo-webhooks/functions/generate-refund-data.ts (genRefundSuccess)
    event = parse_one(fixture("dodo_refund_succeeded.json"))
    assert event.kind is EventKind.REFUND
    assert event.transaction_key == "dodo:pay:pay_test"
    assert event.amount == Decimal("4.00")
    assert event.currency == "USD"
    assert event.refund_id == "ref_test"
    assert event.refunded_total is None
    # no sale total in the refund payload: the ledger decides full or partial from the delivered sale
    assert event.sale_amount is None and event.full_refund is None
    assert event.customer.email == "test@acme.com"


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("dodo_dispute_opened.json", DisputeState.OPENED),
        ("dodo_dispute_lost.json", DisputeState.LOST),
        ("dodo_dispute_won.json", DisputeState.WON),
    ],
)
def test_dodo_disputes_by_event_type(name: str, state: DisputeState) -> None:
    # dodopayments-cli@3254b200 dodo-webhooks/functions/generate-dispute-data.ts
    event = parse_one(fixture(name), with_fields(DODO_MAP, dispute_amount="data.amount"))
    # dispute_lost.json carries it as the string "400", the others as a number
    assert event.amount == Decimal("4.00")
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is state
    assert event.transaction_key == "dodo:pay:pay_test"
    assert event.currency == "USD"


STATE_MAP: dict[str, Any] = {
    **DODO_MAP,
    "events": {"sale": ["payment.succeeded"], "dispute": ["dispute.opened", "dispute.lost", "dispute.won"]},
    "dispute_states": {"opened": ["dispute_opened"], "lost": ["dispute_lost", "dispute_accepted"], "won": []},
    "fields": {**DODO_MAP["fields"], "dispute_state": "data.dispute_status"},
}


@pytest.mark.parametrize(
    ("name", "state"),
    [("dodo_dispute_opened.json", DisputeState.OPENED), ("dodo_dispute_lost.json", DisputeState.LOST)],
)
def test_dispute_state_read_from_the_body(name: str, state: DisputeState) -> None:
    # dodopayments-cli@3254b200 generate-dispute-data.ts; data.dispute_status names the state
    assert parse_one(fixture(name), STATE_MAP).dispute_state is state


def test_dispute_state_not_listed_is_ignored_with_its_value() -> None:
    # dodopayments-cli@3254b200 generate-dispute-data.ts (genDisputeWon): "dispute_won" is not in STATE_MAP
    event = parse_one(fixture("dodo_dispute_won.json"), STATE_MAP)
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and "'dispute_won'" in event.reason and "dispute_states" in event.reason


def test_dispute_outcome_reporting_follows_the_map() -> None:
    assert adapter().reports_dispute_outcome is True
    only_opened = {**DODO_MAP, "events": {"sale": ["payment.succeeded"], "dispute_opened": ["dispute.opened"]}}
    assert adapter(settings=only_opened).reports_dispute_outcome is False
    assert adapter(settings=STATE_MAP).reports_dispute_outcome is True
    opened_states = {**STATE_MAP, "dispute_states": {"opened": ["dispute_opened"]}}
    assert adapter(settings=opened_states).reports_dispute_outcome is False
    # the class default is untouched by one endpoint's map
    assert StandardWebhooksAdapter.reports_dispute_outcome is False


def test_unlisted_announcement_of_the_same_payment_is_ignored() -> None:
    # dodopayments-cli@11c7dd2e src/commands/webhook/functions/generate-subscription-data.ts
    # (genSubscriptionActive): the first charge also arrives as payment.succeeded, which is the sale
    event = parse_one(fixture("dodo_subscription_active.json"))
    assert event.kind is EventKind.IGNORED
    assert event.event_type == "subscription.active"
    assert event.reason == "event type not listed in the endpoint's events"


def test_spec_example_event_is_ignored() -> None:
    # standard-webhooks/standard-webhooks@03f5f8c6 spec/standard-webhooks.md (Signature scheme, minified)
    event = parse_one(fixture("spec_contact_created.json"))
    assert event.kind is EventKind.IGNORED
    assert event.event_type == "contact.created"


# --- parse: Polar's samples through the field map ------------------------------------------------------
# Samples: built from Polar's API reference examples, see fixtures/standardwebhooks/SOURCES.md


def test_polar_order_paid_is_a_sale_with_external_id_and_flat_metadata() -> None:
    # https://polar.sh/docs/api-reference/webhooks/order.paid (Order example)
    event = parse_one(fixture("polar_order_paid.json"), POLAR_MAP)
    assert event.kind is EventKind.SALE
    assert event.transaction_key == "polar:order:e3fc9c4e-5833-4d2e-940a-9e80488d9def"
    assert event.amount == Decimal("90.00")
    assert event.currency == "USD"  # Polar sends "usd"
    assert event.customer.external_id == "usr_1337"
    assert event.customer.email == "customer@example.com"
    assert event.customer.customer_id == "992fae2a-2a17-4b7a-8d9e-e287cf90131b"
    assert event.product_id == "4e216c90-f432-409b-9173-36ed6912c10d"
    assert dict(event.customer.metadata) == {
        "user_id": "usr_1337",
        "reference_id": "spring-launch",
        "seats": "3",
        "gift": "false",
    }


def test_polar_cumulative_refund_reports_the_refunded_total() -> None:
    # https://polar.sh/docs/api-reference/webhooks/order.refunded (Order example, partially refunded)
    event = parse_one(fixture("polar_order_refunded_partial.json"), POLAR_MAP)
    assert event.kind is EventKind.REFUND
    assert event.transaction_key == "polar:order:e3fc9c4e-5833-4d2e-940a-9e80488d9def"
    assert event.refunded_total == Decimal("30.00")
    assert event.amount is None
    assert event.sale_amount == Decimal("90.00")
    assert event.full_refund is False


def test_polar_full_refund_follows_from_the_totals() -> None:
    # polar_order_refunded_partial.json with the whole net amount refunded
    def refund_all(payload: dict[str, Any]) -> None:
        payload["data"]["refunded_amount"] = 9000

    event = parse_one(edited("polar_order_refunded_partial.json", refund_all), POLAR_MAP)
    assert event.refunded_total == Decimal("90.00")
    assert event.full_refund is True


# --- the field map: paths, units, flags -----------------------------------------------------------------


def test_lookup_walks_objects_and_list_indexes() -> None:
    document = {"items": [{"id": 7}, {"id": "b"}], "map": {"0": "zero"}, "n": None}
    assert lookup(document, "items.0.id") == 7
    assert text_at(document, "items.0.id") == "7"
    assert text_at(document, "items.1.id") == "b"
    assert lookup(document, "items.2.id") is None
    assert lookup(document, "items.x") is None
    assert lookup(document, "map.0") == "zero"
    assert lookup(document, "n.deeper") is None
    assert lookup(document, "items.0.id.more") is None
    assert lookup([{"type": "a"}], "0.type") == "a"


def test_integer_ids_become_strings_exactly() -> None:
    # ids beyond 2**53 must not pass through float
    body = json.dumps({"type": "sale", "data": {"id": 820982911946154508, "amount": 100, "currency": "USD"}})
    settings = {"fields": {"transaction_id": "data.id", "amount": "data.amount", "currency": "data.currency"}}
    settings["events"] = {"sale": ["sale"]}
    assert parse_one(body.encode(), settings).transaction_key == "standardwebhooks:820982911946154508"


def minimal(**fields: Any) -> dict[str, Any]:
    base = {"transaction_id": "id", "amount": "amount", "currency": "currency"}
    return {"fields": {**base, **fields}, "events": {"sale": ["sale"], "refund": ["refund"]}}


def body(**values: Any) -> bytes:
    return json.dumps({"type": "sale", "id": "p1", "currency": "USD", **values}).encode()


@pytest.mark.parametrize(
    ("unit", "raw", "currency", "expected"),
    [
        ("minor", b"1999", "USD", "19.99"),
        ("minor", b'"1999"', "USD", "19.99"),
        ("minor", b"500", "JPY", "500"),
        ("minor", b"1234", "KWD", "1.234"),
        ("major", b"19.99", "USD", "19.99"),
        ("major", b"12.5", "USD", "12.50"),
        ("major", b'"12.5"', "EUR", "12.50"),
        ("major", b"500", "JPY", "500"),
    ],
)
def test_amount_units_use_the_currency_exponent(unit: str, raw: bytes, currency: str, expected: str) -> None:
    payload = b'{"type": "sale", "id": "p1", "currency": "%s", "amount": %s}' % (currency.encode(), raw)
    event = parse_one(payload, minimal(amount_unit=unit))
    assert str(event.amount) == expected
    assert event.currency == currency


def test_fixed_currency_when_the_body_has_none() -> None:
    settings = {**minimal(), "currency": "eur"}
    del settings["fields"]["currency"]
    event = parse_one(b'{"type": "sale", "id": "p1", "currency": "USD", "amount": 250}', settings)
    assert event.currency == "EUR" and event.amount == Decimal("2.50")


def test_body_currency_wins_over_the_fixed_one() -> None:
    settings = {**minimal(), "currency": "EUR"}
    assert parse_one(body(amount=250), settings).currency == "USD"
    # and the fixed one fills in when the body omits it
    assert parse_one(b'{"type": "sale", "id": "p1", "amount": 250}', settings).currency == "EUR"


@pytest.mark.parametrize(
    ("flag", "values", "test_mode"),
    [
        (True, None, True),
        (False, None, False),
        ("test", ["test", "sandbox"], True),
        ("SANDBOX", ["test", "sandbox"], True),
        ("live", ["test", "sandbox"], False),
        (1, [1], True),
        (0, [1], False),
        ("true", [True], True),
        ({"nested": True}, None, False),
    ],
)
def test_test_flag_values(flag: Any, values: list[Any] | None, test_mode: bool) -> None:
    fields: dict[str, Any] = {"test_flag": "meta.mode"}
    if values is not None:
        fields["test_values"] = values
    event = parse_one(body(amount=100, meta={"mode": flag}), minimal(**fields))
    assert event.test_mode is test_mode


def test_no_test_flag_configured_means_live() -> None:
    assert parse_one(body(amount=100, test=True), minimal()).test_mode is False


def test_metadata_keeps_scalars_as_strings_and_skips_the_rest() -> None:
    meta = {"user_id": 42, "plan": "pro", "vip": True, "rate": 1.5, "nested": {"a": 1}, "none": None}
    event = parse_one(body(amount=100, meta=meta), minimal(metadata="meta"))
    assert dict(event.customer.metadata) == {"user_id": "42", "plan": "pro", "vip": "true", "rate": "1.5"}


@pytest.mark.parametrize("value", [0, "", [], None])
def test_metadata_that_is_not_an_object_is_empty(value: Any) -> None:
    event = parse_one(body(amount=100, meta=value), minimal(metadata="meta"))
    assert dict(event.customer.metadata) == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-08-04T05:30:45Z", datetime(2025, 8, 4, 5, 30, 45, tzinfo=UTC)),
        ("2025-08-04T05:30:45", datetime(2025, 8, 4, 5, 30, 45, tzinfo=UTC)),
        (1754285445, datetime(2025, 8, 4, 5, 30, 45, tzinfo=UTC)),
        ("yesterday", None),
        (10**30, None),
    ],
)
def test_occurred_at(value: Any, expected: datetime | None) -> None:
    assert parse_one(body(amount=100, at=value), minimal(occurred_at="at")).occurred_at == expected


def test_refund_with_refund_amount_and_sale_total() -> None:
    settings = minimal(refund_amount="refund.amount", refund_id="refund.id", sale_amount="amount")
    payload = {"type": "refund", "id": "p1", "currency": "USD", "amount": 1000}
    partial = parse_one(json.dumps({**payload, "refund": {"id": "r1", "amount": 400}}).encode(), settings)
    assert (partial.amount, partial.refund_id, partial.sale_amount) == (Decimal("4.00"), "r1", Decimal("10.00"))
    assert partial.full_refund is False
    whole = parse_one(json.dumps({**payload, "refund": {"id": "r2", "amount": 1000}}).encode(), settings)
    assert whole.full_refund is True


def test_refund_target_id_names_the_sale() -> None:
    settings = minimal(refund_target_id="refund.payment_id")
    event = parse_one(b'{"type": "refund", "id": "rf_9", "refund": {"payment_id": "p1"}}', settings)
    assert event.transaction_key == "standardwebhooks:p1"
    # nothing says how much: a refund of the whole payment
    assert event.amount is None and event.refunded_total is None and event.full_refund is None


def test_refund_with_a_mapped_amount_missing_is_a_payload_error() -> None:
    # a partial refund must never be taken for a full one because its amount went missing
    settings = minimal(refund_amount="refund.amount", refund_id="refund.id")
    with pytest.raises(PayloadError, match=r"missing refund amount at refund\.amount"):
        adapter(settings=settings).parse(request(b'{"type": "refund", "id": "p1", "currency": "USD"}'))


# --- junk and broken payloads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"42",
        b'"text"',
        b"null",
        b'{"type": ""}',
        b'{"type": {"a": 1}}',
        b"{}",
        b"[" * 100_000,
    ],
)
def test_unreadable_bodies_raise_payload_error(junk: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(junk))


def _drop_payment_id(payload: dict[str, Any]) -> None:
    del payload["data"]["payment_id"]


def _set(path: str, value: Any) -> Any:
    def edit(payload: dict[str, Any]) -> None:
        payload["data"][path] = value

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        _drop_payment_id,
        _set("payment_id", None),
        _set("payment_id", {"id": 1}),
        _set("total_amount", "abc"),
        _set("total_amount", "-400"),
        _set("total_amount", -400),
        _set("total_amount", True),
        _set("total_amount", Decimal("4.5")),
        _set("total_amount", Decimal("1E+400")),
        _set("total_amount", None),
        _set("currency", "ZZZ"),
        _set("currency", 840),
        _set("currency", None),
    ],
)
def test_sale_with_bad_fields_raises_payload_error(edit: Any) -> None:
    # dodopayments-cli@3254b200 generate-payment-data.ts (genPaymentSuccess), edited
    with pytest.raises(PayloadError, match=r"^payment\.succeeded: "):
        adapter().parse(request(edited("dodo_payment_succeeded.json", edit)))


def test_nan_and_infinity_amounts_raise_payload_error() -> None:
    for literal in (b"NaN", b"Infinity", b"1e999999999"):
        payload = SALE.replace(b'"total_amount": 400', b'"total_amount": ' + literal)
        with pytest.raises(PayloadError):
            adapter().parse(request(payload))


# --- delivery id -----------------------------------------------------------------------------------------


def test_delivery_id_is_the_webhook_id() -> None:
    genuine = signed(SALE)
    assert adapter().delivery_id(genuine) == genuine.headers["webhook-id"]
    assert adapter().delivery_id(request(SALE, {"svix-id": "msg_svix"})) == "msg_svix"


@pytest.mark.parametrize("junk", [b"", b"\xff", b"[" * 100_000])
def test_delivery_id_falls_back_to_the_body_hash(junk: bytes) -> None:
    assert adapter().delivery_id(request(junk)) == body_hash(junk)


# --- configuration: validated up front, errors name the YAML path ----------------------------------------


def test_options_need_fields_and_events() -> None:
    with pytest.raises(ValidationError):
        StandardWebhooksOptions()
    problems = config_problems({})
    assert "endpoints.shop.fields: required" in problems
    assert "endpoints.shop.events: required" in problems


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (with_fields(DODO_MAP, transaction_id=None), "endpoints.shop.fields.transaction_id: required"),
        (with_fields(DODO_MAP, amount=None), "endpoints.shop.fields.amount: required"),
        (with_fields(DODO_MAP, email="data..email"), "is not a dot path"),
        (with_fields(DODO_MAP, email="data.customer email"), "is not a dot path"),
        (with_fields(DODO_MAP, amount_unit="cents"), "endpoints.shop.fields.amount_unit"),
        (with_fields(DODO_MAP, amout="data.total_amount"), "endpoints.shop.fields.amout: unknown setting"),
        (with_fields(DODO_MAP, currency=None), "set fields.currency"),
        (with_fields(DODO_MAP, refund_id=None), "refund_amount needs refund_id"),
        (with_fields(DODO_MAP, test_values=[]), "test_values must list at least one value"),
        ({**DODO_MAP, "events": {"refund": ["refund.succeeded"]}}, "endpoints.shop.events.sale: required"),
        ({**DODO_MAP, "events": {"sale": []}}, "endpoints.shop.events.sale"),
        (
            {**DODO_MAP, "events": {"sale": ["payment.succeeded"], "refund": ["payment.succeeded"]}},
            "'payment.succeeded' is listed under both sale and refund",
        ),
        ({**DODO_MAP, "events": {"sale": ["x"], "dispute": ["d"]}}, "events.dispute needs fields.dispute_state"),
        (
            {**with_fields(DODO_MAP, dispute_state="s"), "events": {"sale": ["x"], "dispute": ["d"]}},
            "events.dispute needs dispute_states",
        ),
        ({**DODO_MAP, "dispute_states": {"lost": ["a"], "won": ["a"]}}, "'a' is listed under more than one state"),
        ({**DODO_MAP, "key_prefix": "my shop"}, "endpoints.shop.key_prefix"),
        ({**DODO_MAP, "key_prefix": "shop:"}, "endpoints.shop.key_prefix"),
        ({**DODO_MAP, "currency": "dollars"}, "endpoints.shop.currency: unknown currency"),
        ({**DODO_MAP, "key_encoding": "hex"}, "endpoints.shop.key_encoding"),
        ({**DODO_MAP, "tolerance_seconds": 0}, "endpoints.shop.tolerance_seconds"),
    ],
)
def test_config_errors_are_clear(settings: dict[str, Any], message: str) -> None:
    assert message in config_problems(settings)


def test_full_map_loads_through_the_config() -> None:
    endpoint = {"provider": "standardwebhooks", "secret": SECRET, "customer_key": ["metadata.user_id"], **DODO_MAP}
    loaded = parse_config({"endpoints": {"shop": endpoint}}).endpoints["shop"]
    assert isinstance(loaded.adapter, StandardWebhooksAdapter)
    event = loaded.adapter.parse(request(SALE))[0]
    assert event.transaction_key == "dodo:pay:pay_test"


def test_e2e_settings_are_the_dodo_map_under_the_default_prefix() -> None:
    spec = json.loads((FIXTURES / "e2e.json").read_text())
    mapping = {k: v for k, v in spec["endpoint"].items() if k not in ("customer_key", "key_encoding")}
    assert mapping == {k: v for k, v in DODO_MAP.items() if k != "key_prefix"}
    assert spec["sale"]["key"] == "standardwebhooks:pay_test"


@pytest.mark.parametrize("value", ["9" * 400, "-" + "9" * 400])
def test_absurd_timestamps_are_refused(value: str) -> None:
    headers = {**signed(SALE).headers, "webhook-timestamp": value}
    with pytest.raises(SignatureError, match="webhook-timestamp"):
        adapter().verify(request(SALE, headers), now=NOW)


def test_dispute_without_a_currency_still_names_the_payment() -> None:
    # dodopayments-cli@3254b200 generate-dispute-data.ts (genDisputeLost) without its currency
    def drop_currency(payload: dict[str, Any]) -> None:
        del payload["data"]["currency"]

    settings = with_fields(DODO_MAP, dispute_amount="data.amount")
    event = parse_one(edited("dodo_dispute_lost.json", drop_currency), settings)
    assert (event.kind, event.dispute_state, event.transaction_key) == (
        EventKind.DISPUTE,
        DisputeState.LOST,
        "dodo:pay:pay_test",
    )
    assert event.amount is None and event.currency is None
