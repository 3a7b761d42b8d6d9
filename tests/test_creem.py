"""Creem adapter: signature vectors and round trips, parsing of the docs' samples, junk bodies."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.events import DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import (
    AdapterOptions,
    PayloadError,
    ProviderUnavailable,
    SignatureError,
    WebhookRequest,
    body_hash,
)
from providers.creem import CODE_GONE, CODE_UNKNOWN, CreemAdapter, CreemOptions
from providers.signatures import sign_hmac, standard_webhook_key
from tests.ledger_kit import LedgerHarness
from tests.provider_api_server import API_KEY, ProviderApiServer, read_once

FIXTURES = Path(__file__).parent / "fixtures" / "creem"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_2pQ7oldRotatedSecretValue00"
NOW = 1_728_734_330.0

# RFC 4231 test case 2 (HMAC-SHA256)
RFC4231_KEY = "Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_HEX = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"

TRAN = "creem:tran:tran_5yMaWzAl3jxuGJMCOrYWwk"
DOCS_METADATA = {"custom_data": "mycustom data", "internal_customer_id": "internal_customer_id"}


def adapter(*secrets: str) -> CreemAdapter:
    return CreemAdapter(secrets or (SECRET,), AdapterOptions())


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def edited(name: str, edit: Any) -> bytes:
    payload = json.loads(fixture(name), parse_float=Decimal)
    edit(payload)
    return json.dumps(payload, default=str).encode()


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    return request(body, adapter(secret).sign(body, secret, NOW).headers)


def parse_one(body: bytes) -> NormalizedEvent:
    events = adapter().parse(request(body))
    assert len(events) == 1
    return events[0]


# --- signature -----------------------------------------------------------------------------------


def test_rfc4231_case_2_vector() -> None:
    assert sign_hmac(RFC4231_KEY.encode(), RFC4231_DATA) == RFC4231_HEX
    headers = adapter(RFC4231_KEY).sign(RFC4231_DATA, RFC4231_KEY, NOW).headers
    assert headers == {"creem-signature": RFC4231_HEX}
    adapter(RFC4231_KEY).verify(request(RFC4231_DATA, headers), NOW)


def test_whsec_secret_is_the_plain_utf8_key() -> None:
    body = fixture("checkout_completed.json")
    raw = hmac.new(SECRET.encode("utf-8"), body, hashlib.sha256).hexdigest()
    assert adapter().sign(body, SECRET, NOW).headers["creem-signature"] == raw
    adapter().verify(request(body, {"creem-signature": raw}), NOW)


def test_base64_decoded_whsec_key_is_rejected() -> None:
    # what a Standard Webhooks verifier would use: the base64 part after `whsec_`, decoded
    body = fixture("checkout_completed.json")
    decoded_key = standard_webhook_key(SECRET, "standard")
    wrong = hmac.new(decoded_key, body, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError, match="creem-signature does not match"):
        adapter().verify(request(body, {"creem-signature": wrong}), NOW)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "e2e.json"))
def test_sign_verify_round_trip(name: str) -> None:
    adapter().verify(signed(fixture(name)), NOW)


def test_wrong_secret_is_rejected() -> None:
    body = fixture("checkout_completed.json")
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(signed(body, "whsec_somebodyElsesSecret"), NOW)


def test_missing_header_is_rejected() -> None:
    with pytest.raises(SignatureError, match="missing creem-signature"):
        adapter().verify(request(fixture("checkout_completed.json")), NOW)


def test_tampered_body_is_rejected() -> None:
    body = fixture("checkout_completed.json")
    genuine = signed(body)
    tampered = body.replace(b'"amount_paid": 1210', b'"amount_paid": 9210')
    assert tampered != body
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(tampered, dict(genuine.headers)), NOW)


@pytest.mark.parametrize("header", ["not-hex", "sha256=" + RFC4231_HEX, "abc"])
def test_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(SignatureError, match="malformed creem-signature"):
        adapter().verify(request(b"{}", {"creem-signature": header}), NOW)


def test_truncated_signature_is_a_mismatch() -> None:
    body = fixture("checkout_completed.json")
    short = signed(body).headers["creem-signature"][:32]
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(body, {"creem-signature": short}), NOW)


def test_rotation_accepts_old_and_new_secret() -> None:
    body = fixture("refund_created.json")
    both = adapter(SECRET, OLD_SECRET)
    both.verify(signed(body, SECRET), NOW)
    both.verify(signed(body, OLD_SECRET), NOW)
    with pytest.raises(SignatureError):
        both.verify(signed(body, "whsec_aThirdSecret"), NOW)
    with pytest.raises(SignatureError):
        adapter(SECRET).verify(signed(body, OLD_SECRET), NOW)


def test_no_timestamp_so_no_tolerance() -> None:
    # Creem signs the body only: an old delivery (a manual resend) still verifies
    body = fixture("subscription_paid.json")
    adapter().verify(signed(body), NOW + 365 * 24 * 3600)


# --- sales ---------------------------------------------------------------------------------------


def test_checkout_completed_is_a_sale_of_the_transaction() -> None:
    # docs.creem.io/learn/webhooks/event-types `checkout.completed`, order in the current API shape
    event = parse_one(fixture("checkout_completed.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "checkout.completed"
    assert event.transaction_key == TRAN
    assert event.amount == Decimal("12.10")  # amount_paid: tax included, what was charged
    assert event.currency == "EUR"
    assert event.customer.email == "text@example.com"
    assert event.customer.customer_id == "cust_1OcIK1GEuVvXZwD19tjq2z"
    assert event.customer.name == "Tester Test"
    assert event.customer.metadata == {**DOCS_METADATA, "request_id": "my-request-id"}
    assert event.product_id == "prod_d1AY2Sadk9YAvLI0pj97f"
    assert event.product_type == "subscription"
    assert event.test_mode is False
    assert event.occurred_at == datetime(2024, 10, 12, 11, 58, 45, 927000, tzinfo=UTC)


def test_checkout_completed_sandbox_is_test_mode() -> None:
    # built from the docs' dispute.created sample (see SOURCES.md)
    event = parse_one(fixture("checkout_completed_sandbox.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == "creem:tran:tran_4Dk8CxWFdceRUQgMFhCCXX"
    assert event.amount == Decimal("13.31")
    assert event.currency == "EUR"
    assert event.customer.email == "text@example.com"
    assert event.customer.metadata == {}
    assert event.test_mode is True


def test_subscription_paid_without_a_paid_amount_is_never_booked_at_list_price() -> None:
    # docs.creem.io/learn/webhooks/event-types `subscription.paid`, faithful: no paid amount, only the
    # product's list price (10.00 before tax and discounts) — not money paid
    event = parse_one(fixture("subscription_paid.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == TRAN
    assert event.amount is None
    assert event.reason is not None and "no paid amount in the payload" in event.reason
    assert event.customer.email == "text@example.com"
    assert event.test_mode is True


def test_a_renewal_without_a_paid_amount_is_skipped_with_the_reason(tmp_path: Path) -> None:
    # the case: a 100 %-off first period must not book the list price; the operator sees why
    h = LedgerHarness(tmp_path / "l.db", customer_key=["metadata.internal_customer_id", "email"], test_mode="deliver")
    try:
        [event] = h.apply(parse_one(fixture("subscription_paid.json")))
        assert (event.status, event.reason) == (
            "skipped",
            "no paid amount in the payload (no last_transaction): book transaction tran_5yMaWzAl3jxuGJMCOrYWwk"
            " by hand if no checkout.completed books it (an api_key on the endpoint reads it from Creem)",
        )
        assert h.live() == {}
        # its checkout.completed twin books the first payment all the same (10.00 + 2.10 VAT)
        h.apply(parse_one(fixture("checkout_completed.json")))
        assert h.live() == {TRAN: Decimal("10.00")}
    finally:
        h.close()


# --- a renewal's paid amount from Creem's API (GET /v1/transactions?transaction_id=) -----------------

RENEWAL = "tran_3kQv8RrNwZp2Lm6TcYb1Xe"  # tests/fixtures/creem/api/transaction_renewal.json


@pytest.fixture
def creem_api() -> Iterator[ProviderApiServer]:
    with ProviderApiServer("creem") as server:
        yield server


def renewal_webhook(transaction_id: str = RENEWAL) -> bytes:
    """The docs' `subscription.paid` (no paid amount) for a later period's transaction."""

    def renew(payload: dict[str, Any]) -> None:
        payload["object"]["last_transaction_id"] = transaction_id

    return edited("subscription_paid.json", renew)


def read_with_api(api: ProviderApiServer, body: bytes, **options: Any) -> list[NormalizedEvent]:
    settings = {"api_key": API_KEY, "api_base_url": f"{api.url}/v1", **options}
    creem = CreemAdapter((SECRET,), CreemOptions(**settings))
    return asyncio.run(creem.read(request(body)))


def api_transaction(**changes: Any) -> dict[str, Any]:
    transaction: dict[str, Any] = json.loads(fixture("api/transaction_renewal.json"))
    return {**transaction, **changes}


def test_a_renewal_without_a_paid_amount_books_what_creem_reports_paid(
    creem_api: ProviderApiServer, tmp_path: Path
) -> None:
    # a half-price period: 10.00 list price, 5.00 discount, 1.05 VAT, 6.05 paid (of which 5.00 is commissionable)
    creem_api.put("/v1/transactions", RENEWAL, api_transaction())
    [event] = read_with_api(creem_api, renewal_webhook())
    assert (event.kind, event.transaction_key) == (EventKind.SALE, f"creem:tran:{RENEWAL}")
    assert (event.amount, event.tax, event.currency) == (Decimal("6.05"), Decimal("1.05"), "EUR")
    assert event.reason is None
    # the webhook still says who paid
    assert event.customer.email == "text@example.com"
    assert event.customer.metadata["internal_customer_id"] == "internal_customer_id"
    assert [(r.path, r.query, r.status) for r in creem_api.requests] == [
        ("/v1/transactions", {"transaction_id": RENEWAL}, 200)
    ]
    h = LedgerHarness(tmp_path / "l.db", customer_key=["metadata.internal_customer_id"], test_mode="deliver")
    try:
        h.apply(event)
        assert h.live() == {f"creem:tran:{RENEWAL}": Decimal("5.00")}
    finally:
        h.close()


def test_a_free_renewal_read_from_creem_books_nothing(creem_api: ProviderApiServer) -> None:
    # the 100 %-off period: Creem reports 0 paid, which is not a sale at list price
    creem_api.put("/v1/transactions", RENEWAL, api_transaction(discount_amount=1000, amount_paid=0, tax_amount=0))
    [event] = read_with_api(creem_api, renewal_webhook())
    assert event.kind is EventKind.IGNORED
    assert event.reason == "nothing was paid (free trial or full discount)"


@pytest.mark.parametrize(
    "served",
    [None, {"status": "pending"}, {"status": "failed"}, {"id": "tran_other"}],
    ids=["unknown", "pending", "failed", "another-transaction"],
)
def test_a_renewal_creem_does_not_report_paid_stays_skipped(
    creem_api: ProviderApiServer, served: dict[str, Any] | None
) -> None:
    if served is not None:
        creem_api.put("/v1/transactions", RENEWAL, api_transaction(**served))
    [event] = read_with_api(creem_api, renewal_webhook())
    assert (event.kind, event.amount) == (EventKind.SALE, None)
    assert event.reason is not None and event.reason.startswith("no paid amount in the payload")


@pytest.mark.parametrize("status", [503, 429, 401])
def test_creem_api_trouble_keeps_the_webhook_for_a_later_read(creem_api: ProviderApiServer, status: int) -> None:
    creem_api.put("/v1/transactions", RENEWAL, api_transaction())
    creem_api.fail_next(1, status)
    with pytest.raises(ProviderUnavailable):
        read_with_api(creem_api, renewal_webhook())
    # read again later, the answer books the renewal
    [event] = read_with_api(creem_api, renewal_webhook())
    assert event.amount == Decimal("6.05")


def test_without_an_api_key_or_with_a_paid_amount_creem_is_not_asked(creem_api: ProviderApiServer) -> None:
    creem_api.put("/v1/transactions", RENEWAL, api_transaction())
    [skipped] = read_with_api(creem_api, renewal_webhook(), api_key=None)
    assert skipped.amount is None and skipped.reason is not None

    def expand(payload: dict[str, Any]) -> None:
        payload["object"]["last_transaction"] = {
            "id": "tran_5yMaWzAl3jxuGJMCOrYWwk",
            "amount_paid": 1210,
            "currency": "EUR",
        }

    [paid] = read_with_api(creem_api, edited("subscription_paid.json", expand))
    assert paid.amount == Decimal("12.10")
    assert creem_api.requests == []


def test_first_subscription_payment_announced_twice_has_one_key() -> None:
    # checkout.completed and subscription.paid of the docs describe the same first payment
    checkout = parse_one(fixture("checkout_completed.json"))
    paid = parse_one(fixture("subscription_paid.json"))
    assert checkout.kind is paid.kind is EventKind.SALE
    assert checkout.transaction_key == paid.transaction_key == TRAN


def test_renewal_is_a_new_sale() -> None:
    def renew(payload: dict[str, Any]) -> None:
        payload["object"]["last_transaction_id"] = "tran_2ndCycle0000000000000"

    event = parse_one(edited("subscription_paid.json", renew))
    assert event.transaction_key == "creem:tran:tran_2ndCycle0000000000000"
    assert event.transaction_key != TRAN


def test_subscription_paid_uses_last_transaction_when_expanded() -> None:
    # SubscriptionEntity.last_transaction (armitage-labs/creem-sdk docs/models/components/subscriptionentity.md)
    def expand(payload: dict[str, Any]) -> None:
        payload["object"]["last_transaction"] = {
            "id": "tran_5yMaWzAl3jxuGJMCOrYWwk",
            "object": "transaction",
            "amount": 1000,
            "amount_paid": 1210,
            "currency": "EUR",
            "tax_amount": 210,
        }

    event = parse_one(edited("subscription_paid.json", expand))
    assert event.transaction_key == TRAN
    assert (event.amount, event.tax) == (Decimal("12.10"), Decimal("2.10"))
    assert event.product_type == "subscription"


def test_subscription_paid_ignores_a_last_transaction_of_another_payment() -> None:
    def stale(payload: dict[str, Any]) -> None:
        payload["object"]["last_transaction"] = {"id": "tran_other", "amount_paid": 99999, "currency": "EUR"}

    assert parse_one(edited("subscription_paid.json", stale)).amount is None


def test_legacy_subscription_checkout_without_transaction_is_left_to_subscription_paid() -> None:
    # docs sample as published: the order has no `transaction`
    event = parse_one(fixture("checkout_completed_legacy.json"))
    assert event.kind is EventKind.IGNORED
    assert event.reason == "no order.transaction; the payment is booked from its subscription.paid"


def test_legacy_one_time_checkout_falls_back_to_the_order_key() -> None:
    def one_time(payload: dict[str, Any]) -> None:
        del payload["object"]["subscription"]
        payload["object"]["order"]["type"] = "onetime"

    event = parse_one(edited("checkout_completed_legacy.json", one_time))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == "creem:order:ord_4aDwWXjMLpes4Kj4XqNnUA"
    assert event.amount == Decimal("10.00")  # no amount_paid in older payloads: order.amount
    assert event.product_type == "one_time"
    assert event.test_mode is True


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("checkout_completed.json", ("order", "amount_paid")),
        ("subscription_paid.json", ("last_transaction", "amount_paid")),
    ],
)
def test_nothing_paid_is_ignored(name: str, path: tuple[str, str]) -> None:
    def free(payload: dict[str, Any]) -> None:
        payload["object"].setdefault(path[0], {"currency": "EUR"})[path[1]] = 0

    event = parse_one(edited(name, free))
    assert event.kind is EventKind.IGNORED
    assert event.reason == "nothing was paid (free trial or full discount)"


def test_zero_decimal_currency_uses_its_exponent() -> None:
    def yen(payload: dict[str, Any]) -> None:
        payload["object"]["order"].update(currency="jpy", amount_paid=1210)

    event = parse_one(edited("checkout_completed.json", yen))
    assert event.amount == Decimal("1210")
    assert event.currency == "JPY"


# --- refunds and disputes ------------------------------------------------------------------------


def test_refund_created_reverses_the_transaction() -> None:
    # docs.creem.io/learn/webhooks/event-types `refund.created`, mode set to prod
    event = parse_one(fixture("refund_created.json"))
    assert event.kind is EventKind.REFUND
    assert event.transaction_key == TRAN
    assert event.amount == Decimal("12.10")
    assert event.currency == "EUR"
    assert (event.sale_amount, event.sale_tax) == (Decimal("12.10"), Decimal("2.10"))
    assert event.refunded_total == Decimal("12.10")
    assert event.full_refund is True
    assert event.reason == "requested_by_customer"
    assert event.customer.email == "text@example.com"
    assert event.customer.metadata == {**DOCS_METADATA, "request_id": "my-request-id"}
    assert event.test_mode is False


def test_partial_refunds_then_the_rest() -> None:
    def first_part(payload: dict[str, Any]) -> None:
        payload["object"]["refund_amount"] = 500
        payload["object"]["transaction"].update(refunded_amount=500, status="partially_refunded")

    partial = parse_one(edited("refund_created.json", first_part))
    assert partial.amount == Decimal("5.00")
    assert partial.refunded_total == Decimal("5.00")
    assert partial.full_refund is False

    def second_part(payload: dict[str, Any]) -> None:
        payload["object"]["refund_amount"] = 710
        payload["object"]["transaction"]["refunded_amount"] = 1210

    rest = parse_one(edited("refund_created.json", second_part))
    assert rest.amount == Decimal("7.10")
    assert rest.refunded_total == Decimal("12.10")
    assert rest.full_refund is True
    assert rest.transaction_key == partial.transaction_key == TRAN


def test_refund_without_sale_total_leaves_full_refund_unknown() -> None:
    def bare(payload: dict[str, Any]) -> None:
        payload["object"]["transaction"] = {"id": "tran_5yMaWzAl3jxuGJMCOrYWwk"}

    event = parse_one(edited("refund_created.json", bare))
    assert event.transaction_key == TRAN
    assert event.amount == Decimal("12.10")
    assert event.full_refund is None
    assert event.sale_amount is None


def test_dispute_created_opens_a_dispute_on_the_transaction() -> None:
    # docs.creem.io/learn/webhooks/event-types `dispute.created`, faithful
    event = parse_one(fixture("dispute_created.json"))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is DisputeState.OPENED
    assert event.transaction_key == "creem:tran:tran_4Dk8CxWFdceRUQgMFhCCXX"
    assert event.amount == Decimal("13.31")
    assert event.currency == "EUR"
    assert event.sale_amount == Decimal("13.31")
    assert event.customer.email == "text@example.com"
    assert event.product_id == "prod_3EFtQRQ9SNIizK3xwfxZHu"
    assert event.test_mode is True


def test_no_dispute_outcome_is_reported() -> None:
    # so the core reverses on dispute.created instead of waiting for a lost event that never comes
    assert CreemAdapter.reports_dispute_outcome is False


def test_sandbox_sale_and_its_dispute_share_the_key() -> None:
    sale = parse_one(fixture("checkout_completed_sandbox.json"))
    dispute = parse_one(fixture("dispute_created.json"))
    assert sale.transaction_key == dispute.transaction_key


# --- ignored events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        # docs.creem.io/learn/webhooks/event-types
        ("subscription_active.json", "sync only; the payment is booked from checkout.completed / subscription.paid"),
        ("subscription_canceled.json", "subscription ended; no payment"),
        ("subscription_expired.json", "period ended without payment; a later subscription.paid books a retry"),
        ("subscription_update.json", "subscription changed; no payment"),
        ("subscription_trialing.json", "trial started; nothing paid yet"),
        # docs.creem.io/code/webhooks
        ("subscription_paused.json", "subscription paused; no payment"),
        ("subscription_unpaid.json", "payment failed; no money collected"),
    ],
)
def test_subscription_status_events_are_ignored(name: str, reason: str) -> None:
    event = parse_one(fixture(name))
    assert event.kind is EventKind.IGNORED
    assert event.event_type == json.loads(fixture(name))["eventType"]
    assert event.reason == reason
    assert event.transaction_key is None


@pytest.mark.parametrize("event_type", ["credits.granted", "checkout.expired", "subscription.scheduled_cancel"])
def test_other_events_are_ignored_with_a_reason(event_type: str) -> None:
    event = parse_one(json.dumps({"id": "evt_1", "eventType": event_type, "object": {}}).encode())
    assert event.kind is EventKind.IGNORED
    assert event.reason


def test_unknown_event_without_object_is_still_ignored() -> None:
    event = parse_one(b'{"id": "evt_1", "eventType": "something.new"}')
    assert event.kind is EventKind.IGNORED
    assert event.reason == "event not used by the bridge"


# --- customer facts and mode ---------------------------------------------------------------------


def test_metadata_is_flattened_and_request_id_does_not_override() -> None:
    def metadata(payload: dict[str, Any]) -> None:
        payload["object"]["metadata"] = {
            "user_id": 42,
            "request_id": "merchant-set",
            "vip": True,
            "nested": {"a": 1},
            "empty": None,
            "ratio": Decimal("1.5"),
        }

    event = parse_one(edited("checkout_completed.json", metadata))
    assert event.customer.metadata == {"user_id": "42", "request_id": "merchant-set", "vip": "true", "ratio": "1.5"}


@pytest.mark.parametrize(
    ("mode", "test_mode"), [("prod", False), ("test", True), ("sandbox", True), ("local", True), ("PROD", False)]
)
def test_mode_flag(mode: str, test_mode: bool) -> None:
    def set_mode(payload: dict[str, Any]) -> None:
        payload["object"]["mode"] = mode

    assert parse_one(edited("checkout_completed.json", set_mode)).test_mode is test_mode


def test_missing_top_level_mode_falls_back_to_the_order() -> None:
    def sandbox_order(payload: dict[str, Any]) -> None:
        del payload["object"]["mode"]
        payload["object"]["order"]["mode"] = "sandbox"

    assert parse_one(edited("checkout_completed.json", sandbox_order)).test_mode is True


# --- junk ----------------------------------------------------------------------------------------


def _drop(*path: str) -> Any:
    def edit(payload: dict[str, Any]) -> None:
        target = payload["object"]
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return edit


def _set(value: Any, *path: str) -> Any:
    def edit(payload: dict[str, Any]) -> None:
        target = payload["object"]
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b'"checkout.completed"',
        b"{}",
        b'{"eventType": 5, "object": {}}',
        b'{"eventType": "checkout.completed"}',
        b'{"eventType": "refund.created", "object": []}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_unreadable_bodies_raise_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("checkout_completed.json", _drop("order")),
        ("checkout_completed.json", _drop("order", "currency")),
        ("checkout_completed.json", _set("ZZZ", "order", "currency")),
        ("checkout_completed.json", _set("1210", "order", "amount_paid")),
        ("checkout_completed.json", _set(True, "order", "amount_paid")),
        ("checkout_completed.json", _set(-1210, "order", "amount_paid")),
        ("checkout_completed.json", _set({"id": "ord_x", "currency": "EUR", "transaction": "tran_x"}, "order")),
        ("subscription_paid.json", _drop("last_transaction_id")),
        ("subscription_paid.json", _set({"amount_paid": 1210, "currency": "ZZZ"}, "last_transaction")),
        ("refund_created.json", _drop("transaction")),
        ("refund_created.json", _drop("transaction", "id")),
        ("refund_created.json", _drop("refund_amount")),
        ("dispute_created.json", _drop("transaction", "id")),
        ("dispute_created.json", _set("13,31", "amount")),
    ],
)
def test_events_acted_on_with_bad_fields_raise_payload_error(name: str, edit: Any) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(request(edited(name, edit)))


@pytest.mark.parametrize("amount", [b"1e999999999", b"1E+400", b"-0.5"])
def test_huge_or_odd_numbers_raise_payload_error(amount: bytes) -> None:
    body = fixture("checkout_completed.json").replace(b'"amount_paid": 1210', b'"amount_paid": ' + amount)
    with pytest.raises(PayloadError):
        adapter().parse(request(body))


def test_fractional_cents_raise_payload_error() -> None:
    # a JSON number with a fraction arrives as Decimal and is not a whole number of cents
    body = fixture("checkout_completed.json").replace(b'"amount_paid": 1210', b'"amount_paid": 12.10')
    assert body != fixture("checkout_completed.json")
    with pytest.raises(PayloadError, match="amount_paid"):
        adapter().parse(request(body))


# --- delivery id, registry, options --------------------------------------------------------------


def test_delivery_id_is_the_envelope_id() -> None:
    assert adapter().delivery_id(request(fixture("refund_created.json"))) == "evt_61eTsJHUgInFw2BQKhTiPV"


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[1, 2]", b'{"eventType": "x"}', b'{"id": 7}', b'{"id": ""}', b"[" * 100_000]
)
def test_delivery_id_falls_back_to_the_body_hash(body: bytes) -> None:
    assert adapter().delivery_id(request(body)) == body_hash(body)


def test_registry_finds_the_adapter() -> None:
    assert get_adapter_class("creem") is CreemAdapter


def test_options_forbid_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        CreemAdapter.Options.model_validate({"key_scheme": "standard"})


def test_the_sale_is_booked_without_the_tax_it_names() -> None:
    # checkout.completed (current shape, SOURCES.md): amount_paid 1210 of which tax_amount 210
    event = parse_one(fixture("checkout_completed.json"))
    assert (event.amount, event.tax) == (Decimal("12.10"), Decimal("2.10"))


def test_a_partial_refund_takes_off_its_share_of_the_tax(tmp_path: Path) -> None:
    # the case: 6.05 back of a 12.10 payment (10.00 + 2.10 VAT) leaves 5.00, not 3.95
    def half(payload: dict[str, Any]) -> None:
        payload["object"].update(id="ref_firstHalf000000000", refund_amount=605)
        payload["object"]["transaction"].update(refunded_amount=605, status="partially_refunded")

    h = LedgerHarness(tmp_path / "l.db", customer_key=["metadata.internal_customer_id", "email"])
    try:
        h.apply(parse_one(fixture("checkout_completed.json")))
        h.apply(parse_one(edited("refund_created.json", half)))
        assert h.live_amount() == Decimal("5.00")
        h.apply(parse_one(fixture("refund_created.json")))
        assert h.live() == {}
    finally:
        h.close()


@pytest.mark.parametrize("status", ["pending", "failed", "canceled"])
def test_a_refund_that_did_not_succeed_moves_nothing(status: str) -> None:
    # refund.created carries the refund's `status` (docs sample: "succeeded")
    event = parse_one(edited("refund_created.json", _set(status, "status")))
    assert event.kind is EventKind.IGNORED
    assert event.reason == f"refund status is {status!r}; only a succeeded refund moves money"


# --- discount codes (issue 15): the order names the discount by id; the code is Creem's API's ---------

DISCOUNT_ID = "dis_4Ma9KJ7d3TnRmVhgSz1mQK"


def _discounted(discount: Any = DISCOUNT_ID) -> bytes:
    return edited("checkout_completed.json", lambda p: p["object"]["order"].update(discount=discount))


def _read(creem: CreemAdapter, body: bytes) -> list[NormalizedEvent]:
    return read_once(creem, request(body))


@pytest.fixture
def discount_api() -> Iterator[ProviderApiServer]:
    with ProviderApiServer("creem") as server:
        server.put("/v1/discounts", DISCOUNT_ID, json.loads(fixture("api/discount.json")))
        yield server


def _with_key(server: ProviderApiServer) -> CreemAdapter:
    return CreemAdapter((SECRET,), CreemOptions(api_key=server.api_key, api_base_url=f"{server.url}/v1"))


def test_without_an_api_key_a_discounted_order_says_its_code_is_unknown() -> None:
    [sale] = _read(adapter(), _discounted())
    assert (sale.kind, sale.coupon_code, sale.reason) == (EventKind.SALE, None, CODE_UNKNOWN)
    assert parse_one(fixture("checkout_completed.json")).reason is None


def test_an_expanded_discount_gives_its_code_without_an_api_call(discount_api: ProviderApiServer) -> None:
    [sale] = _read(_with_key(discount_api), _discounted({"id": DISCOUNT_ID, "code": "VIDEO10"}))
    assert (sale.coupon_code, sale.reason) == ("VIDEO10", None)
    assert discount_api.requests == []


def test_with_an_api_key_the_code_is_read_from_the_discount(discount_api: ProviderApiServer) -> None:
    [sale] = _read(_with_key(discount_api), _discounted())
    assert (sale.kind, sale.coupon_code, sale.reason) == (EventKind.SALE, "PODCAST20", None)
    [asked] = discount_api.requests
    assert (asked.path, asked.query, asked.status) == ("/v1/discounts", {"discount_id": DISCOUNT_ID}, 200)


def test_orders_without_a_discount_and_other_events_ask_nothing(discount_api: ProviderApiServer) -> None:
    _read(_with_key(discount_api), fixture("checkout_completed.json"))
    _read(_with_key(discount_api), fixture("subscription_paid.json"))
    # (the renewal asks for its transaction's paid amount, not for a discount)
    assert [r.path for r in discount_api.requests if r.path == "/v1/discounts"] == []


def test_a_deleted_discount_keeps_the_sale_without_a_code(discount_api: ProviderApiServer) -> None:
    [sale] = _read(_with_key(discount_api), _discounted("dis_gone"))
    assert (sale.kind, sale.coupon_code, sale.reason) == (EventKind.SALE, None, CODE_GONE)
    assert sale.transaction_key == parse_one(fixture("checkout_completed.json")).transaction_key


@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_a_failed_look_up_leaves_the_call_to_be_read_again(discount_api: ProviderApiServer, status: int) -> None:
    discount_api.fail_next(1, status=status)
    with pytest.raises(ProviderUnavailable, match=f"Creem API .*{status}"):
        _read(_with_key(discount_api), _discounted())
