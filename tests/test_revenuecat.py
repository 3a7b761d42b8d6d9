"""RevenueCat adapter: the static Authorization value, parsing of the docs' sample events, junk bodies."""

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

from bridge.events import CustomerFacts, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import PayloadError, SignatureError, WebhookRequest, body_hash
from providers.revenuecat import RevenueCatAdapter, RevenueCatOptions
from tests.ledger_kit import LedgerHarness

FIXTURES = Path(__file__).parent / "fixtures" / "revenuecat"
TOKEN = "rc_9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
NOW = 1_700_000_000.0
KEY = "revenuecat:APP_STORE:123456789012345"

# Fixture sources (details and edits in tests/fixtures/revenuecat/SOURCES.md): "docs" = the sample events
# of https://www.revenuecat.com/docs/integrations/webhooks/sample-events, i.e. RevenueCat/docs
# code_blocks/integrations/webhooks/sample-events_<n>.json (n and commit per file in SOURCES.md).
FIRSTLAST = CustomerFacts(
    email="firstlast@gmail.com",
    customer_id="$RCAnonymousID:87c6049c58069238dce29853916d624c",
    external_id="1234567890",
    metadata={"$email": "firstlast@gmail.com"},
)


def adapter(*secrets: str, **options: Any) -> RevenueCatAdapter:
    return RevenueCatAdapter(secrets or (TOKEN,), RevenueCatOptions(**options))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def edited(name: str, **changes: Any) -> bytes:
    """A fixture with `event` fields replaced (a value of `...` drops the field)."""
    payload = json.loads(fixture(name), parse_float=Decimal)
    for field, value in changes.items():
        if value is ...:
            payload["event"].pop(field, None)
        else:
            payload["event"][field] = value
    return dumps(payload)


def dumps(payload: Any) -> bytes:
    """JSON with every Decimal written as the number it is (RevenueCat's prices are JSON numbers)."""

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"<decimal:{value}>"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    return re.sub(r'"<decimal:([^>"]+)>"', r"\1", json.dumps(mark(payload))).encode()


def request(body: bytes, authorization: str | None = None) -> WebhookRequest:
    headers = {} if authorization is None else {"authorization": authorization}
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers, body=body)


def parse_one(body: bytes, **options: Any) -> NormalizedEvent:
    events = adapter(**options).parse(request(body))
    assert len(events) == 1
    return events[0]


# --- authentication: a static header value, no signature -----------------------------------------------
# No public test vectors exist (reference sheet: "None — authentication is a static header value"); the
# sheet's tests are: exact match passes, any difference (case, whitespace) fails, constant-time compare.


def test_the_exact_configured_value_passes() -> None:
    body = fixture("initial_purchase.json")  # docs
    adapter(f"Bearer {TOKEN}").verify(request(body, f"Bearer {TOKEN}"), NOW)
    adapter(TOKEN).verify(request(body, TOKEN), NOW)


def test_the_bearer_prefix_may_be_on_either_side() -> None:
    # RevenueCat sends the dashboard value verbatim: with or without "Bearer ", the bridge's copy matches
    body = fixture("initial_purchase.json")  # docs
    adapter(TOKEN).verify(request(body, f"Bearer {TOKEN}"), NOW)
    adapter(f"Bearer {TOKEN}").verify(request(body, TOKEN), NOW)


@pytest.mark.parametrize(
    "sent",
    [
        f"bearer {TOKEN}",
        f"BEARER {TOKEN}",
        f"Bearer  {TOKEN}",
        f" Bearer {TOKEN}",
        f"Bearer {TOKEN} ",
        f"Bearer {TOKEN.upper()}",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        "Bearer",
        "Bearer \udcff",
        "Bearer é",
    ],
)
def test_any_difference_is_a_mismatch(sent: str) -> None:
    body = fixture("initial_purchase.json")  # docs
    with pytest.raises(SignatureError, match=r"^Authorization header does not match$"):
        adapter().verify(request(body, sent), NOW)


@pytest.mark.parametrize("sent", [None, ""])
def test_missing_authorization_is_refused(sent: str | None) -> None:
    body = fixture("initial_purchase.json")  # docs
    with pytest.raises(SignatureError, match=r"^missing Authorization header$"):
        adapter().verify(request(body, sent), NOW)


def test_rotation_accepts_old_and_new_value() -> None:
    body = fixture("renewal.json")  # docs
    rotating = adapter("Bearer old-value", "Bearer new-value")
    rotating.verify(request(body, "Bearer old-value"), NOW)
    rotating.verify(request(body, "Bearer new-value"), NOW)
    with pytest.raises(SignatureError, match="does not match"):
        rotating.verify(request(body, "Bearer third-value"), NOW)


@pytest.mark.parametrize("secret", ["", "Bearer "])
def test_empty_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        RevenueCatAdapter(["ok-value", secret], RevenueCatOptions())


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "e2e.json"))
def test_sign_verify_round_trip(name: str) -> None:
    body = fixture(name)  # docs
    signed = adapter().sign(body, TOKEN, NOW)
    assert signed.headers["authorization"] == TOKEN
    assert signed.query_string == ""
    adapter().verify(request(body, signed.headers["authorization"]), NOW)


def test_the_body_is_not_authenticated() -> None:
    # the honest limit of a static header: whoever holds the value can post any body (docs: known limits)
    body = fixture("initial_purchase.json").replace(b'"price": 4.99', b'"price": 499.0')  # docs
    adapter().verify(request(body, TOKEN), NOW)


def test_no_timestamp_so_no_tolerance_window() -> None:
    body = fixture("initial_purchase.json")  # docs
    adapter().verify(request(body, TOKEN), 0.0)
    adapter().verify(request(body, TOKEN), NOW + 10 * 365 * 86400)


# --- sales --------------------------------------------------------------------------------------------


def test_initial_purchase_is_a_sale_of_the_store_transaction() -> None:
    event = parse_one(fixture("initial_purchase.json"))  # docs, sample-events_1
    assert event.kind is EventKind.SALE
    assert event.event_type == "INITIAL_PURCHASE"
    assert event.transaction_key == KEY
    assert event.amount == Decimal("4.99")
    assert event.currency == "USD"
    assert event.customer == FIRSTLAST
    assert event.product_id == "com.subscription.weekly"
    assert event.product_type == "subscription"
    assert event.test_mode is False
    assert event.occurred_at == datetime.fromtimestamp(1658726374, tz=UTC)


def test_renewal_is_a_sale_in_the_purchased_currency() -> None:
    event = parse_one(fixture("renewal.json"))  # docs, sample-events_2
    assert event.kind is EventKind.SALE and event.event_type == "RENEWAL"
    assert event.amount == Decimal("7.99") and event.currency == "EUR"
    assert event.transaction_key == KEY
    assert event.product_type == "subscription"


def test_each_renewal_period_is_its_own_sale() -> None:
    # the docs sample reuses the first purchase's ids; a real renewal is a new store transaction
    body = edited("renewal.json", transaction_id="123456789012399", id="bb2a4cba-renewal-0002")  # docs
    event = parse_one(body)
    assert event.transaction_key == "revenuecat:APP_STORE:123456789012399"
    assert event.transaction_key != parse_one(fixture("initial_purchase.json")).transaction_key


def test_the_same_purchase_announced_twice_has_one_key() -> None:
    # a resend or a second event about the same transaction names the same payment
    first = parse_one(fixture("initial_purchase.json"))  # docs
    again = parse_one(edited("initial_purchase.json", id="0f7e6c1d-resent", event_timestamp_ms=1658726999000))
    assert first.transaction_key == again.transaction_key == KEY
    assert first.amount == again.amount


def test_non_renewing_purchase_is_a_one_time_sale() -> None:
    event = parse_one(fixture("non_renewing_purchase.json"))  # docs, sample-events_5
    assert event.kind is EventKind.SALE and event.event_type == "NON_RENEWING_PURCHASE"
    assert event.amount == Decimal("32.99") and event.currency == "CAD"
    assert event.product_id == "2100_tokens" and event.product_type == "one_time"
    assert event.transaction_key == KEY


def test_usd_price_option() -> None:
    renewal = parse_one(fixture("renewal.json"), price="usd")  # docs
    assert renewal.amount == Decimal("8.14") and renewal.currency == "USD"
    # RevenueCat's converted USD price can have more digits than cents: rounded to the currency
    one_off = parse_one(fixture("non_renewing_purchase.json"), price="usd")  # docs: "price": 25.487
    assert one_off.amount == Decimal("25.49") and one_off.currency == "USD"


def test_unknown_purchased_currency_falls_back_to_the_usd_price() -> None:
    event = parse_one(edited("renewal.json", currency=None))  # docs
    assert event.amount == Decimal("8.14") and event.currency == "USD"
    event = parse_one(edited("renewal.json", price_in_purchased_currency=...))
    assert event.amount == Decimal("8.14") and event.currency == "USD"


def test_proceeds_option_deducts_store_commission_and_tax() -> None:
    # 4.99 x (1 - 0.0 - 0.3) = 3.493
    event = parse_one(fixture("initial_purchase.json"), revenue="proceeds")  # docs
    assert event.amount == Decimal("3.49")
    # 32.99 CAD x (1 - 0.0 - 0.15) = 28.0415
    assert parse_one(fixture("non_renewing_purchase.json"), revenue="proceeds").amount == Decimal("28.04")
    # unknown percentages deduct nothing
    body = edited("initial_purchase.json", tax_percentage=None, commission_percentage=None)
    assert parse_one(body, revenue="proceeds").amount == Decimal("4.99")


def test_the_estimated_tax_is_the_endpoints_to_keep_out(tmp_path: Path) -> None:
    # RevenueCat's event fields (SOURCES.md): tax_percentage, "the estimated percentage of the
    # transaction price that will be deducted for taxes", of price_in_purchased_currency
    body = edited("initial_purchase.json", tax_percentage=Decimal("0.1667"))
    event = parse_one(body)
    assert (event.amount, event.tax) == (Decimal("4.99"), Decimal("0.83"))
    proceeds = parse_one(body, revenue="proceeds")
    # the store's 30 % commission off the amount, the tax left to the ledger: 4.99 - 1.50 - 0.83
    assert (proceeds.amount, proceeds.tax) == (Decimal("3.49"), Decimal("0.83"))
    h = LedgerHarness(tmp_path / "l.db", customer_key=["external_id", "email"], test_mode="deliver")
    try:
        h.apply(proceeds)
        assert h.live_amount() == Decimal("2.66")
    finally:
        h.close()
    assert parse_one(edited("initial_purchase.json", tax_percentage=None)).tax is None


def test_trial_start_is_ignored() -> None:
    event = parse_one(fixture("trial_started.json"))  # docs, sample-events_11
    assert event.kind is EventKind.IGNORED and event.event_type == "INITIAL_PURCHASE"
    assert event.reason == "price is 0 (free trial or free offer)"


def test_sandbox_purchase_is_test_mode() -> None:
    event = parse_one(fixture("initial_purchase_sandbox.json"))  # docs, edited to SANDBOX
    assert event.kind is EventKind.SALE and event.test_mode is True
    assert event.transaction_key == "revenuecat:APP_STORE:2000000123456789"


def test_test_store_purchase_is_test_mode() -> None:
    event = parse_one(edited("initial_purchase.json", store="TEST_STORE"))  # docs
    assert event.test_mode is True and event.transaction_key == "revenuecat:TEST_STORE:123456789012345"


def test_stores_are_part_of_the_key() -> None:
    event = parse_one(edited("initial_purchase.json", store="PLAY_STORE", transaction_id="GPA.3372-1234-5678-90123"))
    assert event.transaction_key == "revenuecat:PLAY_STORE:GPA.3372-1234-5678-90123"


def test_ignore_stores_drops_payments_partnero_gets_natively() -> None:
    body = edited("initial_purchase.json", store="STRIPE", transaction_id="sub_1PqRsT")  # docs
    assert parse_one(body).kind is EventKind.SALE
    event = parse_one(body, ignore_stores=["stripe", "PADDLE"])
    assert event.kind is EventKind.IGNORED and "STRIPE" in (event.reason or "")
    refund = edited("cancellation_customer_support.json", store="STRIPE")
    assert parse_one(refund, ignore_stores=["STRIPE"]).kind is EventKind.IGNORED
    assert parse_one(fixture("initial_purchase.json"), ignore_stores=["STRIPE"]).kind is EventKind.SALE


def test_family_sharing_copies_are_not_sales() -> None:
    # a family member's copy of a purchase is a transaction of its own that nobody paid for
    event = parse_one(edited("initial_purchase.json", is_family_share=True, transaction_id="123456789099999"))
    assert event.kind is EventKind.IGNORED and "Family Sharing" in (event.reason or "")
    refund = parse_one(edited("cancellation_customer_support.json", is_family_share=True))
    assert refund.kind is EventKind.IGNORED
    assert parse_one(edited("initial_purchase.json", is_family_share=False)).kind is EventKind.SALE


# --- customer facts -----------------------------------------------------------------------------------


def test_subscriber_attributes_become_metadata() -> None:
    attributes = {
        "$email": {"value": "ada@example.com", "updated_at_ms": 1},
        "$displayName": {"value": "Ada Lovelace", "updated_at_ms": 1},
        "partnero_customer_key": {"value": "usr_8f3a2c", "updated_at_ms": 1},
        "empty": {"value": "", "updated_at_ms": 1},
        "no_value": {"updated_at_ms": 1},
        "nested": {"value": {"a": 1}},
        "bare": "not an attribute object",
    }
    event = parse_one(edited("initial_purchase.json", subscriber_attributes=attributes))  # docs
    assert event.customer.email == "ada@example.com"
    assert event.customer.name == "Ada Lovelace"
    assert dict(event.customer.metadata) == {
        "$email": "ada@example.com",
        "$displayName": "Ada Lovelace",
        "partnero_customer_key": "usr_8f3a2c",
    }


def test_anonymous_app_user_id_falls_back_to_an_alias() -> None:
    # docs refund sample: app_user_id is anonymous, the app's own id is among the aliases
    event = parse_one(fixture("cancellation_customer_support_docs.json"))  # docs, sample-events_9
    assert event.customer.external_id == "user_1234"
    assert event.customer.customer_id == "$RCAnonymousID:12345678-1234-1234-1234-123456789123"


def test_only_anonymous_ids_leave_external_id_empty() -> None:
    body = edited(
        "initial_purchase.json",
        app_user_id="$RCAnonymousID:aaaa",
        original_app_user_id="$RCAnonymousID:bbbb",
        aliases=["$RCAnonymousID:aaaa"],
    )
    assert parse_one(body).customer.external_id is None


# --- refunds ------------------------------------------------------------------------------------------


def test_customer_support_cancellation_is_a_full_refund() -> None:
    event = parse_one(fixture("cancellation_customer_support_docs.json"))  # docs, sample-events_9
    assert event.kind is EventKind.REFUND
    assert event.event_type == "CANCELLATION"
    assert event.transaction_key == "revenuecat:APP_STORE:100000000000000"
    assert event.amount == Decimal("9.99") and event.currency == "USD"
    assert event.full_refund is True
    assert event.test_mode is False
    assert event.occurred_at == datetime.fromtimestamp(1601337615.995, tz=UTC)


def test_refund_names_the_key_of_its_sale() -> None:
    sale = parse_one(fixture("initial_purchase.json"))  # docs
    refund = parse_one(fixture("cancellation_customer_support.json"))  # docs, aligned with the sale
    assert refund.kind is EventKind.REFUND and refund.full_refund is True
    assert refund.transaction_key == sale.transaction_key == KEY
    assert refund.amount == sale.amount == Decimal("4.99")


def test_refund_with_unknown_price_is_still_a_full_refund() -> None:
    body = edited("cancellation_customer_support.json", price=None, price_in_purchased_currency=None)
    event = parse_one(body)
    assert event.kind is EventKind.REFUND and event.full_refund is True
    assert event.amount is None and event.transaction_key == KEY


@pytest.mark.parametrize(
    ("name", "reason"), [("cancellation_unsubscribe.json", "UNSUBSCRIBE"), ("trial_cancelled.json", "UNSUBSCRIBE")]
)
def test_other_cancellations_are_ignored(name: str, reason: str) -> None:
    event = parse_one(fixture(name))  # docs, sample-events_3 / _12
    assert event.kind is EventKind.IGNORED and event.event_type == "CANCELLATION"
    assert f"({reason})" in (event.reason or "")


@pytest.mark.parametrize("reason", ["BILLING_ERROR", "DEVELOPER_INITIATED", "PRICE_INCREASE", "UNKNOWN", None])
def test_only_customer_support_means_refund(reason: str | None) -> None:
    event = parse_one(edited("cancellation_customer_support.json", cancel_reason=reason))  # docs
    assert event.kind is EventKind.IGNORED


# --- ignored events -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "event_type", "reason"),
    [
        ("uncancellation.json", "UNCANCELLATION", "no payment"),
        ("billing_issue.json", "BILLING_ISSUE", "could not charge"),
        ("product_change.json", "PRODUCT_CHANGE", "later RENEWAL"),
        ("expiration.json", "EXPIRATION", "no payment"),
        ("refund_reversed.json", "REFUND_REVERSED", "add it back in Partnero"),
        ("invoice_issuance.json", "INVOICE_ISSUANCE", "not paid yet"),
        ("virtual_currency_transaction.json", "VIRTUAL_CURRENCY_TRANSACTION", "virtual currency"),
    ],
)
def test_docs_events_not_acted_on_are_ignored(name: str, event_type: str, reason: str) -> None:
    event = parse_one(fixture(name))  # docs
    assert event.kind is EventKind.IGNORED and event.event_type == event_type
    assert reason in (event.reason or "")


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("TEST", "dashboard"),
        ("SUBSCRIPTION_PAUSED", "paused"),
        ("SUBSCRIPTION_EXTENDED", "extended"),
        ("TRANSFER", "another app user id"),
        ("SUBSCRIBER_ALIAS", "merged"),
        ("TEMPORARY_ENTITLEMENT_GRANT", "arrives later"),
        ("SOMETHING_NEW", "not used by the bridge"),
    ],
)
def test_other_event_types_are_ignored_with_a_reason(event_type: str, reason: str) -> None:
    # the dashboard's TEST event has no published sample: the common fields of the field reference
    body = json.dumps({"api_version": "1.0", "event": {"type": event_type, "id": "0a1b", "app_id": "app1"}}).encode()
    event = parse_one(body)
    assert event.kind is EventKind.IGNORED and event.event_type == event_type
    assert reason in (event.reason or "")


# --- unreadable bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"event": []}',
        b'{"event": {"id": "x"}}',
        b'{"event": {"type": 5}}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_unreadable_bodies_raise_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("initial_purchase.json", {"transaction_id": ...}),
        ("initial_purchase.json", {"transaction_id": ""}),
        ("initial_purchase.json", {"transaction_id": True}),
        ("initial_purchase.json", {"store": ...}),
        ("initial_purchase.json", {"price": None, "price_in_purchased_currency": None}),
        ("initial_purchase.json", {"price": "4.99", "price_in_purchased_currency": "4.99"}),
        ("initial_purchase.json", {"currency": "ZZZ"}),
        ("initial_purchase.json", {"price_in_purchased_currency": Decimal("-4.99")}),
        ("initial_purchase.json", {"price_in_purchased_currency": Decimal("1E+999999")}),
        ("initial_purchase.json", {"commission_percentage": "0.3"}),
        ("cancellation_customer_support.json", {"transaction_id": None}),
        ("cancellation_customer_support.json", {"store": None}),
    ],
)
def test_events_acted_on_with_bad_fields_raise_payload_error(name: str, changes: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        adapter(revenue="proceeds").parse(request(edited(name, **changes)))


def test_absurd_percentages_raise_payload_error() -> None:
    body = edited("initial_purchase.json", tax_percentage=Decimal("0.8"), commission_percentage=Decimal("0.3"))
    with pytest.raises(PayloadError, match="percentages"):
        adapter(revenue="proceeds").parse(request(body))


@pytest.mark.parametrize("millis", [Decimal("1E+999999999"), -1, "soon", 10**20])
def test_odd_timestamps_leave_occurred_at_empty(millis: Any) -> None:
    assert parse_one(edited("initial_purchase.json", purchased_at_ms=millis)).occurred_at is None


# --- delivery id, registry, options -------------------------------------------------------------------


def test_delivery_id_is_the_event_id() -> None:
    # RevenueCat's retries keep the event id
    assert adapter().delivery_id(request(fixture("initial_purchase.json"))) == "12345678-1234-1234-1234-123456789012"
    assert (
        adapter().delivery_id(request(fixture("cancellation_customer_support.json")))
        == "12345678-1234-1234-1234-12345678912"
    )


@pytest.mark.parametrize(
    "body", [b"", b"junk", b"[1]", b'{"event": 1}', b'{"event": {"id": ""}}', b'{"event": {"id": 7}}', b"[" * 100_000]
)
def test_delivery_id_falls_back_to_the_body_hash(body: bytes) -> None:
    assert adapter().delivery_id(request(body)) == body_hash(body)


def test_registry_finds_the_adapter() -> None:
    assert get_adapter_class("revenuecat") is RevenueCatAdapter


def test_options_forbid_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        RevenueCatAdapter.Options.model_validate({"key_scheme": "standard"})
    with pytest.raises(ValidationError):
        RevenueCatAdapter.Options.model_validate({"price": "eur"})


# --- the optional HMAC signature ----------------------------------------------------------------------------
# Format as implemented by public integrations (tests/fixtures/revenuecat/SOURCES.md, "Signed webhooks"):
# X-RevenueCat-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">.

SIGNING_SECRET = "rcwh_sign_5e884898da28047151d0e56f8dc6292773603d0d"


def signature_header(body: bytes, secret: str = SIGNING_SECRET, timestamp: int = int(NOW)) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signed_request(body: bytes, signature: str | None) -> WebhookRequest:
    headers = {"authorization": f"Bearer {TOKEN}"}
    if signature is not None:
        headers["x-revenuecat-webhook-signature"] = signature
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers, body=body)


def test_with_a_signing_secret_the_body_signature_is_verified() -> None:
    body = fixture("initial_purchase.json")
    signing = adapter(signing_secret=SIGNING_SECRET)
    signing.verify(signed_request(body, signature_header(body)), NOW)
    assert signing.sign(body, TOKEN, NOW).headers["x-revenuecat-webhook-signature"] == signature_header(body)
    with pytest.raises(SignatureError, match="missing x-revenuecat-webhook-signature"):
        signing.verify(signed_request(body, None), NOW)
    # the Authorization value alone no longer authenticates: the body is what an attacker would change
    with pytest.raises(SignatureError, match="does not match"):
        signing.verify(signed_request(body.replace(b"4.99", b"499.0"), signature_header(body)), NOW)
    with pytest.raises(SignatureError, match="does not match"):
        signing.verify(signed_request(body, signature_header(body, secret="someone-elses-secret")), NOW)
    with pytest.raises(SignatureError, match="timestamp outside tolerance"):
        signing.verify(signed_request(body, signature_header(body, timestamp=int(NOW) - 301)), NOW)
    with pytest.raises(SignatureError, match="malformed"):
        signing.verify(signed_request(body, "v1=" + "0" * 64), NOW)
    # and the static header is still checked first
    with pytest.raises(SignatureError, match="Authorization header does not match"):
        adapter("another-authorization-value", signing_secret=SIGNING_SECRET).verify(
            signed_request(body, signature_header(body)), NOW
        )


def test_signature_rotation_accepts_either_secret_and_either_entry() -> None:
    body = fixture("renewal.json")
    old, new = signature_header(body, "old-signing-secret-0123"), signature_header(body)
    both = f"{new},v1={old.split('v1=')[1]}"
    adapter(signing_secret=SIGNING_SECRET).verify(signed_request(body, both), NOW)
    adapter(signing_secret=["old-signing-secret-0123", SIGNING_SECRET]).verify(signed_request(body, old), NOW)


def test_without_a_signing_secret_the_authorization_value_is_enough() -> None:
    body = fixture("initial_purchase.json")
    adapter().verify(signed_request(body, None), NOW)
    adapter(signing_secret="").verify(signed_request(body, None), NOW)
