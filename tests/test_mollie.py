"""Mollie adapter: URL token, next-gen signatures, ping shapes, the payment fetch and its faults, state → events."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from bridge.config import ConfigError, parse_config
from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import PayloadError, ProviderUnavailable, SignatureError, WebhookRequest, body_hash
from providers.mollie import MollieAdapter, MollieOptions, metadata, payment_events
from tests.ledger_kit import LedgerHarness
from tests.mollie_server import API_KEY, MollieServer

FIXTURES = Path(__file__).parent / "fixtures" / "mollie"
TOKEN = "b1946ac92492d2347c6235b4d2611184"
NOW = 1_700_000_000.0
KEY = "mollie:payment:tr_WDqYK6vllg"

# Fixture sources (details and edits in tests/fixtures/mollie/SOURCES.md):
#   "docs ping"   = the webhook example of Mollie's webhooks guide (https://docs.mollie.com/reference/webhooks;
#                   source/guides/webhooks.rst of the api-documentation repository)
#   "docs payment" = https://docs.mollie.com/reference/v2/payments-api/get-payment (mollie/api-documentation
#                   get-payment.rst, same as mollie/mollie-api-ruby test/fixtures/payments/get.json)
#   "python sdk"  = mollie/mollie-api-python tests/responses/payment_single.json, customer_single.json
#   "php sdk"     = mollie/mollie-api-php tests/Fixtures/Webhooks/payloads/payment-link-paid.{full,simple}.json
#   "php vector"  = mollie/mollie-api-php tests/Webhooks/SignatureValidatorTest.php (inputs; digest computed)
VECTOR_BODY = b'{"id":"tr_12345","event_type":"payment-link.paid"}'
VECTOR_SECRET = "test_webhook_secret"
VECTOR_DIGEST = "e479a5e4aaa17db94cfc546071e10e91c0b37f21e464e751ebdd7d7ad2ffd146"
ALTERNATE_SECRET = "alternate_webhook_secret"
ALTERNATE_DIGEST = "d9a3b662172fdc140ac73ce937f49edcb72552dfbb8dfeb1696118a2c18386ef"


def adapter(*tokens: str, **options: Any) -> MollieAdapter:
    settings: dict[str, Any] = {"api_key": API_KEY, **options}
    return MollieAdapter(tokens or (TOKEN,), MollieOptions(**settings))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def payment(name: str, **changes: Any) -> dict[str, Any]:
    """A payment fixture with top-level fields replaced (None drops one)."""
    data: dict[str, Any] = json.loads(fixture(name), parse_float=Decimal)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def request(body: bytes, query: str = f"token={TOKEN}", headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body, query_string=query)


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def read(mollie: MollieAdapter, body: bytes) -> list[NormalizedEvent]:
    async def go() -> list[NormalizedEvent]:
        try:
            return await mollie.read(request(body))
        finally:
            await mollie.aclose()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def running_server() -> Iterator[MollieServer]:
    with MollieServer() as running:
        yield running


@pytest.fixture
def server(running_server: MollieServer) -> MollieServer:
    running_server.reset()
    return running_server


def api(server: MollieServer, **options: Any) -> MollieAdapter:
    return adapter(api_base_url=server.url, **options)


CUSTOMER = CustomerFacts(customer_id="cst_8wmqcHMN4U", metadata={"order_id": "12345", "user_id": "usr_8f3a2c"})
PAID_AT = datetime(2018, 3, 20, 13, 15, 2, tzinfo=UTC)
SALE = NormalizedEvent(
    kind=EventKind.SALE,
    event_type="payment.paid",
    transaction_key=KEY,
    amount=Decimal("10.00"),
    currency="EUR",
    customer=CUSTOMER,
    occurred_at=PAID_AT,
)


# --- next-gen signature: the SDK's vector first ------------------------------------------------------


def test_php_sdk_vector_digest_is_hmac_sha256_hex_of_the_raw_body() -> None:
    # php vector
    assert signature(VECTOR_BODY, VECTOR_SECRET) == "sha256=" + VECTOR_DIGEST
    assert signature(VECTOR_BODY, ALTERNATE_SECRET) == "sha256=" + ALTERNATE_DIGEST
    signed = adapter(signing_secret=VECTOR_SECRET).sign(VECTOR_BODY, TOKEN, NOW)
    assert signed.headers == {"x-mollie-signature": "sha256=" + VECTOR_DIGEST}
    assert signed.query_string == f"token={TOKEN}"


@pytest.mark.parametrize("header", ["sha256=" + VECTOR_DIGEST, VECTOR_DIGEST, "sha256=" + VECTOR_DIGEST.upper()])
def test_vector_verifies_with_or_without_the_prefix(header: str) -> None:
    # php vector: the SDK strips an optional `sha256=` prefix
    adapter(signing_secret=VECTOR_SECRET).verify(request(VECTOR_BODY, headers={"x-mollie-signature": header}), NOW)


def test_rotation_either_signing_secret_and_either_of_two_signatures() -> None:
    # php vector: several secrets, several signatures
    both = adapter(signing_secret=[VECTOR_SECRET, ALTERNATE_SECRET])
    for digest in (VECTOR_DIGEST, ALTERNATE_DIGEST):
        both.verify(request(VECTOR_BODY, headers={"x-mollie-signature": f"sha256={digest}"}), NOW)
    only_alternate = adapter(signing_secret=ALTERNATE_SECRET)
    # the header sent twice, joined by a proxy: one signature per secret, any may match
    joined = f"sha256={VECTOR_DIGEST}, sha256={ALTERNATE_DIGEST}"
    only_alternate.verify(request(VECTOR_BODY, headers={"x-mollie-signature": joined}), NOW)
    with pytest.raises(SignatureError, match="does not match"):
        only_alternate.verify(request(VECTOR_BODY, headers={"x-mollie-signature": f"sha256={VECTOR_DIGEST}"}), NOW)


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({}, VECTOR_BODY, "missing x-mollie-signature"),
        ({"x-mollie-signature": "sha256=" + VECTOR_DIGEST}, VECTOR_BODY + b" ", "does not match"),
        ({"x-mollie-signature": "sha256=" + ALTERNATE_DIGEST}, VECTOR_BODY, "does not match"),
        ({"x-mollie-signature": "sha256=not-hex"}, VECTOR_BODY, "malformed x-mollie-signature"),
        ({"x-mollie-signature": "sha256="}, VECTOR_BODY, "does not match"),
    ],
)
def test_next_gen_signature_failures(headers: dict[str, str], body: bytes, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        adapter(signing_secret=VECTOR_SECRET).verify(request(body, headers=headers), NOW)


def test_a_signed_event_to_an_endpoint_without_signing_secret_is_refused() -> None:
    headers = {"x-mollie-signature": "sha256=" + VECTOR_DIGEST}
    with pytest.raises(SignatureError, match="no signing_secret"):
        adapter().verify(request(VECTOR_BODY, headers=headers), NOW)


def test_sign_verify_round_trip_for_pings_and_events() -> None:
    mollie = adapter(signing_secret="whsec_rotating")
    for name in ("ping_sale.txt", "event_payment_paid.json", "event_payment_link_paid_full.json"):
        body = fixture(name)
        signed = mollie.sign(body, TOKEN, NOW)
        mollie.verify(request(body, signed.query_string, signed.headers), NOW)
    # a ping is never signed by Mollie, so sign() adds only the URL token
    assert mollie.sign(fixture("ping_sale.txt"), TOKEN, NOW).headers == {}


# --- the URL token ----------------------------------------------------------------------------------


def test_missing_or_wrong_token_is_refused_before_anything_else() -> None:
    body = fixture("ping_docs.txt")  # docs ping
    with pytest.raises(SignatureError, match="missing token"):
        adapter().verify(request(body, query=""), NOW)
    with pytest.raises(SignatureError, match="token does not match"):
        adapter().verify(request(body, query="token=guess"), NOW)
    with pytest.raises(SignatureError, match="token does not match"):
        adapter().verify(request(body, query="token="), NOW)


def test_token_rotation_accepts_either_token() -> None:
    mollie = adapter("new-token", "old-token")
    body = fixture("ping_sale.txt")
    for token in ("new-token", "old-token"):
        mollie.verify(request(body, query=f"token={token}"), NOW)
    with pytest.raises(SignatureError):
        mollie.verify(request(body, query="token=other"), NOW)


def test_empty_token_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="empty URL token"):
        adapter("")


# --- the shape of a classic ping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"id=tr_d0b0E3EA3v",  # docs ping, byte for byte in ping_docs.txt
        b"id=tr_WDqYK6vllg&testmode=1",  # fields Mollie might add are left alone
    ],
)
def test_a_payment_ping_passes(body: bytes) -> None:
    adapter().verify(request(body), NOW)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"id=",
        b"id=ord_kEn1PlbGa",  # Orders API pings are not supported
        b"id=re_4qqhO89gsT",
        b"id=tr_WDqYK6vllg ",  # a tampered ping no longer names a payment id
        b"id=tr_WDqYK6vllg%00",
        b"id=tr_../../customers/cst_8wmqcHMN4U",
        b"id=tr_a&id=tr_b",
        b"payment=tr_WDqYK6vllg",
        b"\xff\xfe",
        b"[1, 2]",
        b"id=tr_" + b"a" * 65,
    ],
)
def test_anything_but_a_payment_ping_is_refused(body: bytes) -> None:
    with pytest.raises(SignatureError, match="malformed ping"):
        adapter().verify(request(body), NOW)


# --- a payment's state as events -----------------------------------------------------------------------


def test_paid_payment_is_one_sale() -> None:
    # docs payment, made paid (SOURCES.md)
    assert payment_events(payment("payment_paid.json")) == [SALE]


def test_open_payment_is_ignored_with_its_status() -> None:
    # docs payment, byte for byte
    [event] = payment_events(payment("payment_open.json"))
    assert event.kind is EventKind.IGNORED
    assert event.event_type == "payment.open"
    assert event.reason == "payment not completed yet (open)"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("authorized", "authorized, not captured: the sale is booked when the payment becomes paid"),
        ("canceled", "payment canceled: no money moved"),
        ("expired", "payment expired: no money moved"),
        ("failed", "payment failed: no money moved"),
        ("pending", "payment not completed yet (pending)"),
        ("mystery", "payment status 'mystery' is not a sale"),
    ],
)
def test_statuses_that_are_not_sales(status: str, reason: str) -> None:
    [event] = payment_events(payment("payment_open.json", status=status))
    assert (event.kind, event.event_type, event.reason) == (EventKind.IGNORED, f"payment.{status}", reason)


def test_fully_refunded_payment_reports_its_sale_and_the_cumulative_refund() -> None:
    # docs payment, refunded in full (amountRefunded 10.00)
    sale, refund = payment_events(payment("payment_refunded.json"))
    assert sale == SALE
    assert refund == NormalizedEvent(
        kind=EventKind.REFUND,
        event_type="payment.refunded",
        transaction_key=KEY,
        currency="EUR",
        customer=CUSTOMER,
        refunded_total=Decimal("10.00"),
        sale_amount=Decimal("10.00"),
        full_refund=True,
    )


def test_partially_refunded_payment_reports_the_refunded_total_so_far() -> None:
    # docs payment, amountRefunded 5.95 of 10.00
    _, refund = payment_events(payment("payment_partially_refunded.json"))
    assert (refund.kind, refund.refunded_total, refund.full_refund) == (EventKind.REFUND, Decimal("5.95"), False)
    assert refund.amount is None and refund.refund_id is None


def test_refunds_above_the_amount_are_a_full_refund() -> None:
    # Mollie lets a merchant refund return shipping on top of the payment
    over = {"value": "12.50", "currency": "EUR"}
    _, refund = payment_events(payment("payment_refunded.json", amountRefunded=over))
    assert (refund.refunded_total, refund.full_refund) == (Decimal("12.50"), True)


def test_charged_back_payment_stays_paid_and_reports_a_lost_dispute() -> None:
    # docs payment with amountChargedBack 10.00 (the field as in python sdk payment_single.json)
    sale, dispute = payment_events(payment("payment_charged_back.json"))
    assert sale == SALE
    assert dispute == NormalizedEvent(
        kind=EventKind.DISPUTE,
        event_type="payment.charged_back",
        transaction_key=KEY,
        amount=Decimal("10.00"),
        currency="EUR",
        customer=CUSTOMER,
        sale_amount=Decimal("10.00"),
        dispute_state=DisputeState.LOST,
    )
    assert MollieAdapter.reports_dispute_outcome is True


def test_recurring_test_mode_payment_is_its_own_sale_flagged_test() -> None:
    # python sdk payment_single.json, made paid (SOURCES.md)
    [sale] = payment_events(payment("payment_recurring_test.json"))
    assert sale == NormalizedEvent(
        kind=EventKind.SALE,
        event_type="payment.paid",
        transaction_key="mollie:payment:tr_7UhSN1zuXS",
        amount=Decimal("10.00"),
        currency="EUR",
        customer=CustomerFacts(customer_id="cst_8wmqcHMN4U", metadata={"order_id": "12345"}),
        test_mode=True,
        occurred_at=datetime(2018, 3, 20, 9, 14, 37, tzinfo=UTC),
    )


def test_the_partial_chargeback_of_the_sdk_sample_reverses_the_recurring_sale() -> None:
    # python sdk payment_single.json carries amountChargedBack 5.00 of 10.00
    five = {"value": "5.00", "currency": "EUR"}
    sale, dispute = payment_events(payment("payment_recurring_test.json", amountChargedBack=five))
    assert sale.kind is EventKind.SALE
    assert (dispute.kind, dispute.amount, dispute.dispute_state) == (
        EventKind.DISPUTE,
        Decimal("5.00"),
        DisputeState.LOST,
    )


def test_zero_amount_first_payment_is_ignored() -> None:
    zero = {"value": "0.00", "currency": "EUR"}
    [event] = payment_events(payment("payment_paid.json", amount=zero, sequenceType="first"))
    assert event.kind is EventKind.IGNORED
    assert event.reason == "amount is 0 (a first payment that only sets up a mandate)"


def test_currency_exponent_is_respected() -> None:
    yen = {"value": "1500", "currency": "JPY"}
    [sale] = payment_events(payment("payment_paid.json", amount=yen, amountRefunded=None, amountRemaining=None))
    assert (sale.amount, sale.currency) == (Decimal("1500"), "JPY")


def test_billing_address_email_is_used_when_present() -> None:
    billing = {"givenName": "Piet", "familyName": "Mondriaan", "email": "piet@mondriaan.com", "country": "NL"}
    [sale] = payment_events(payment("payment_paid.json", billingAddress=billing))
    assert sale.customer.email == "piet@mondriaan.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"order_id": "12345"}, {"order_id": "12345"}),
        # Mollie keeps any JSON: numbers become text, booleans true/false, nested values and null are skipped
        (
            {"user_id": 1, "rate": Decimal("1.50"), "vip": True, "cart": {"a": 1}, "tags": ["x"], "none": None},
            {"user_id": "1", "rate": "1.50", "vip": "true"},
        ),
        # the docs' payments webhook example stores a JSON-encoded string
        ('{"order_id":12345}', {"order_id": "12345"}),
        ("plain text note", {}),
        ('{"broken', {}),
        (["user_id"], {}),
        (None, {}),
    ],
)
def test_metadata_forms(value: object, expected: dict[str, str]) -> None:
    assert metadata(value) == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": None},
        {"amount": {"value": "ten", "currency": "EUR"}},
        {"amount": {"value": "10.00", "currency": "XXY"}},
        {"amount": {"value": 10, "currency": "EUR"}},
        {"amount": {"value": "-10.00", "currency": "EUR"}},
        {"amountRefunded": {"value": "1.00", "currency": "USD"}},
        {"amountChargedBack": "10.00"},
        {"id": None},
        {"id": 12345},
    ],
)
def test_unreadable_payments_raise_value_errors(changes: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        payment_events(payment("payment_paid.json", **changes))


# --- read(): the fetch ---------------------------------------------------------------------------------


def test_ping_is_read_from_the_api_with_the_bearer_key(server: MollieServer) -> None:
    assert read(api(server), fixture("ping_sale.txt")) == [SALE]
    [call] = server.requests
    assert (call.method, call.path, call.authorized, call.status) == ("GET", "/v2/payments/tr_WDqYK6vllg", True, 200)


def test_the_same_ping_reports_each_new_state(server: MollieServer) -> None:
    mollie = api(server)
    ping = fixture("ping_sale.txt")
    assert read(mollie, ping) == [SALE]
    server.set_payment(payment("payment_partially_refunded.json"))
    assert [(e.kind, e.refunded_total) for e in read(mollie, ping)] == [
        (EventKind.SALE, None),
        (EventKind.REFUND, Decimal("5.95")),
    ]
    server.set_payment(payment("payment_refunded.json"))
    assert read(mollie, ping)[1].full_refund is True


def test_an_id_that_is_not_a_payment_of_the_account_books_nothing(server: MollieServer) -> None:
    with pytest.raises(PayloadError, match="tr_d0b0E3EA3v is not a payment of this Mollie account"):
        read(api(server), fixture("ping_docs.txt"))


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_api_answers_are_provider_unavailable(server: MollieServer, status: int) -> None:
    server.fail_next(1, status)
    with pytest.raises(ProviderUnavailable, match=f"answered {status}"):
        read(api(server), fixture("ping_sale.txt"))
    # the stored call is read again later, and then it works
    assert read(api(server), fixture("ping_sale.txt")) == [SALE]


def test_a_timeout_is_provider_unavailable(server: MollieServer) -> None:
    server.hang_next(1, seconds=2)
    with pytest.raises(ProviderUnavailable, match="timed out"):
        read(api(server, timeout_seconds=0.2), fixture("ping_sale.txt"))
    # the server answers the abandoned request later; wait for it so it is not counted in the next test
    deadline = time.monotonic() + 10
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.requests) == 1


def test_an_unreachable_api_is_provider_unavailable() -> None:
    with MollieServer() as stopped:
        url = stopped.url
    with pytest.raises(ProviderUnavailable, match="unreachable"):
        read(adapter(api_base_url=url), fixture("ping_sale.txt"))


def test_a_refused_api_key_is_retried_until_it_is_fixed(server: MollieServer) -> None:
    with pytest.raises(ProviderUnavailable, match=r"refused the api_key \(401\)"):
        read(adapter(api_key="live_wrong", api_base_url=server.url), fixture("ping_sale.txt"))
    assert server.requests[-1].authorized is False


def test_other_client_errors_are_payload_errors(server: MollieServer) -> None:
    server.fail_next(1, 400)
    with pytest.raises(PayloadError, match="answered 400"):
        read(api(server), fixture("ping_sale.txt"))


def test_an_unreadable_payment_from_the_api_is_a_payload_error(server: MollieServer) -> None:
    server.set_payment(payment("payment_paid.json", amount={"value": "ten", "currency": "EUR"}))
    with pytest.raises(PayloadError, match="unreadable Mollie payment tr_WDqYK6vllg"):
        read(api(server), fixture("ping_sale.txt"))


def test_customer_email_is_fetched_when_enabled(server: MollieServer) -> None:
    # python sdk customer_single.json
    [sale] = read(api(server, fetch_customer_email=True), fixture("ping_sale.txt"))
    assert sale.customer == CustomerFacts(
        email="customer@example.org",
        customer_id="cst_8wmqcHMN4U",
        name="Customer A",
        metadata={"order_id": "12345", "user_id": "usr_8f3a2c"},
    )
    assert [r.path for r in server.requests] == ["/v2/payments/tr_WDqYK6vllg", "/v2/customers/cst_8wmqcHMN4U"]


def test_a_missing_customer_still_books_the_sale_without_email(server: MollieServer) -> None:
    server.set_payment(payment("payment_paid.json", customerId="cst_doesnotexist"))
    [sale] = read(api(server, fetch_customer_email=True), fixture("ping_sale.txt"))
    assert (sale.kind, sale.customer.email, sale.customer.customer_id) == (EventKind.SALE, None, "cst_doesnotexist")


def test_a_failing_customer_fetch_retries_the_whole_read(server: MollieServer) -> None:
    server.fail_next(1, 503, path="/v2/customers/")
    with pytest.raises(ProviderUnavailable):
        read(api(server, fetch_customer_email=True), fixture("ping_sale.txt"))


def test_no_customer_fetch_by_default(server: MollieServer) -> None:
    read(api(server), fixture("ping_sale.txt"))
    assert [r.path for r in server.requests] == ["/v2/payments/tr_WDqYK6vllg"]


# --- read(): next-gen events --------------------------------------------------------------------------


def test_next_gen_payment_paid_reads_the_payment(server: MollieServer) -> None:
    # event_payment_paid.json: envelope of the php sdk fixtures around the docs payment
    assert read(api(server), fixture("event_payment_paid.json")) == [SALE]


def test_next_gen_refund_reads_the_refunds_payment_cumulatively(server: MollieServer) -> None:
    # event_refund_refunded.json: the refund snapshot of https://docs.mollie.com/reference/refunds-api-webhooks
    server.set_payment(payment("payment_partially_refunded.json"))
    _, refund = read(api(server), fixture("event_refund_refunded.json"))
    # the payment's cumulative total, never the refund's own amount: a classic ping for the same
    # refund reports the same total, so running both kinds of webhook does not count it twice
    assert (refund.transaction_key, refund.refunded_total, refund.amount) == (KEY, Decimal("5.95"), None)


@pytest.mark.parametrize(
    ("name", "event_type", "reason"),
    [
        (
            "event_payment_link_paid_full.json",  # php sdk
            "payment-link.paid",
            "payment link event; its payment arrives as payment.paid or the payment's own webhook",
        ),
        (
            "event_payment_link_paid_simple.json",  # php sdk
            "payment-link.paid",
            "payment link event; its payment arrives as payment.paid or the payment's own webhook",
        ),
    ],
)
def test_next_gen_events_not_acted_on_need_no_api_call(
    server: MollieServer, name: str, event_type: str, reason: str
) -> None:
    [event] = read(api(server), fixture(name))
    assert (event.kind, event.event_type, event.reason) == (EventKind.IGNORED, event_type, reason)
    assert adapter().parse(request(fixture(name))) == [event]
    assert server.requests == []


def edited_event(name: str, **changes: Any) -> bytes:
    data = json.loads(fixture(name))
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("body", "event_type", "reason"),
    [
        (
            edited_event("event_payment_paid.json", type="payment.failed"),
            "payment.failed",
            "payment failed: no money moved",
        ),
        (
            edited_event("event_refund_refunded.json", type="refund.canceled"),
            "refund.canceled",
            "refund canceled before it was processed",
        ),
        (
            edited_event("event_refund_refunded.json", _embedded=None),
            "refund.refunded",
            "refund event without the refund: subscribe with full payloads (or use the payment's webhookUrl)",
        ),
        (
            edited_event("event_payment_paid.json", type="sales-invoice.paid"),
            "sales-invoice.paid",
            "sales invoice, not a payment",
        ),
        (
            edited_event("event_payment_paid.json", type="something.new"),
            "something.new",
            "event type not used by the bridge",
        ),
    ],
)
def test_other_next_gen_events_are_ignored(server: MollieServer, body: bytes, event_type: str, reason: str) -> None:
    [event] = read(api(server), body)
    assert (event.kind, event.event_type, event.reason) == (EventKind.IGNORED, event_type, reason)
    assert server.requests == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'["payment.paid"]',
        b'{"resource": "event"}',
        edited_event("event_payment_paid.json", entityId="pl_qng5gbbv8NAZ5gpM5ZYgx"),
        edited_event("event_payment_paid.json", entityId=None),
    ],
)
def test_unreadable_next_gen_events_are_payload_errors(server: MollieServer, body: bytes) -> None:
    with pytest.raises(PayloadError):
        read(api(server), body)
    assert server.requests == []


# --- parse(), delivery ids, options ----------------------------------------------------------------------


def test_parse_cannot_answer_a_ping_without_the_api() -> None:
    with pytest.raises(PayloadError, match="tr_WDqYK6vllg: the payment's state is only known from the Mollie API"):
        adapter().parse(request(fixture("ping_sale.txt")))
    for junk in (b"", b"\xff", b"id=ord_1", b"{]"):
        with pytest.raises(PayloadError):
            adapter().parse(request(junk))


def test_every_ping_receipt_gets_its_own_delivery_id() -> None:
    # the same ping announces every change of the payment: deduplicating it would lose the refund
    mollie = adapter()
    first, second = (mollie.delivery_id(request(fixture("ping_sale.txt"))) for _ in range(2))
    assert first != second
    assert re.fullmatch(r"tr_WDqYK6vllg:[0-9a-f]{32}", first)


def test_next_gen_events_are_deduplicated_on_their_event_id() -> None:
    # php sdk: a retried event keeps its id
    assert adapter().delivery_id(request(fixture("event_payment_link_paid_full.json"))) == "event_GvJ8WHrp5isUdRub9CJyH"


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"{", b"[1]", b'{"id": 7}', b"id=ord_1", b"x" * 100])
def test_delivery_id_falls_back_to_the_body_hash_on_junk(body: bytes) -> None:
    assert adapter().delivery_id(request(body)) == body_hash(body)


def test_registry_and_config() -> None:
    assert get_adapter_class("mollie") is MollieAdapter
    settings = {
        "provider": "mollie",
        "secret": TOKEN,
        "api_key": API_KEY,
        "signing_secret": ["one", "two"],
        "fetch_customer_email": True,
    }
    endpoint = parse_config({"endpoints": {"shop": settings}}).endpoints["shop"]
    assert isinstance(endpoint.adapter, MollieAdapter)
    assert endpoint.adapter.content_type() == "application/x-www-form-urlencoded"
    assert endpoint.adapter.settings.api_base_url == "https://api.mollie.com/v2"
    # the key never shows in a repr or a log line
    assert API_KEY not in repr(endpoint.adapter.settings)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"api_key": API_KEY}, "endpoints.shop.secret: required"),
        ({"secret": TOKEN}, "endpoints.shop.api_key: required"),
        ({"secret": TOKEN, "api_key": "  "}, "endpoints.shop.api_key: must not be empty"),
        (
            {"secret": TOKEN, "api_key": API_KEY, "webhook_secret": "x"},
            "endpoints.shop.webhook_secret: unknown setting",
        ),
    ],
)
def test_config_errors(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"endpoints": {"shop": {"provider": "mollie", **settings}}})
    assert problem in str(caught.value)


def test_options_need_an_api_key() -> None:
    with pytest.raises(pydantic.ValidationError):
        MollieOptions()  # type: ignore[call-arg]


def _refund(refund_id: str, value: str, status: str) -> dict[str, Any]:
    # the refund object of https://docs.mollie.com/reference/get-refund (as in event_refund_refunded.json)
    snapshot = json.loads(fixture("event_refund_refunded.json"))["_embedded"]["refund"]
    return {**snapshot, "id": refund_id, "amount": {"currency": "EUR", "value": value}, "status": status}


def test_only_settled_refunds_take_commission_off(server: MollieServer, tmp_path: Path) -> None:
    # Get payment with embed=refunds (https://docs.mollie.com/reference/get-payment): amountRefunded
    # already counts the pending 2.00, which the merchant may still cancel; the canceled 1.00 never paid out
    paid = payment("payment_partially_refunded.json")
    paid["amountRefunded"] = {"value": "7.95", "currency": "EUR"}
    paid["_embedded"] = {
        "refunds": [
            _refund("re_4qqhO89gsT", "5.95", "refunded"),
            _refund("re_pending0001", "2.00", "pending"),
            _refund("re_canceled001", "1.00", "canceled"),
        ]
    }
    server.set_payment(paid)
    events = read(api(server), fixture("ping_refund.txt"))
    refunds = [e for e in events if e.kind is EventKind.REFUND]
    assert [(e.refund_id, e.amount) for e in refunds] == [("re_4qqhO89gsT", Decimal("5.95"))]
    assert [r.query for r in server.requests if r.path.startswith("/v2/payments/")] == ["embed=refunds"]
    h = LedgerHarness(tmp_path / "l.db", customer_key=["metadata.user_id"])
    try:
        h.apply(*events)
        assert h.live_amount() == Decimal("4.05")
        # the pending refund settles: the next read takes it off too, the settled one is not counted twice
        paid["_embedded"]["refunds"][1]["status"] = "refunded"
        server.set_payment(paid)
        h.apply(*read(api(server), fixture("ping_refund.txt")))
        assert h.live_amount() == Decimal("2.05")
    finally:
        h.close()


def test_test_server_reports_jpy_refunds_as_mollie_does(server: MollieServer) -> None:
    # the e2e JPY scenarios rest on these: yen values without decimals (https://docs.mollie.com/payments/multicurrency),
    # amountRefunded counting refunds still on their way back, the refunds themselves only with embed=refunds
    server.before_webhook("ping_jpy_refund_processing.txt")
    url = f"{server.url}/payments/tr_5B8cwPMGnU6qLbRvo7qEZo"
    headers = {"authorization": f"Bearer {API_KEY}"}
    plain = httpx.get(url, headers=headers).json()
    assert plain["amount"] == {"value": "1500", "currency": "JPY"}
    assert plain["amountRefunded"] == {"value": "800", "currency": "JPY"}
    assert plain["amountRemaining"] == {"value": "700", "currency": "JPY"}
    assert "_embedded" not in plain
    embedded = httpx.get(url, params={"embed": "refunds"}, headers=headers).json()["_embedded"]["refunds"]
    assert [(r["id"], r["amount"]["value"], r["status"]) for r in embedded] == [
        ("re_4qqhO89gsT", "500", "processing"),
        ("re_jpyCanceled1", "300", "pending"),
    ]
    listed = httpx.get(f"{url}/refunds", headers=headers).json()
    assert listed["count"] == 2 and listed["_embedded"]["refunds"] == embedded
    server.before_webhook("ping_jpy_refund_failed.txt")
    assert httpx.get(url, headers=headers).json()["amountRefunded"] == {"value": "0", "currency": "JPY"}
