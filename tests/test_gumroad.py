"""Gumroad adapter: URL token and Basic auth checks, form parsing of every fixture, delivery ids, junk."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pydantic
import pytest

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import PayloadError, SignatureError, WebhookRequest, body_hash
from providers.gumroad import GumroadAdapter, GumroadOptions

FIXTURES = Path(__file__).parent / "fixtures" / "gumroad"
SECRET = "9f86d081884c7d659a2feaa0c55ad015"
NOW = 1_700_000_000.0
SALE_KEY = "gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q=="

# Fixture sources (details and edits in tests/fixtures/gumroad/SOURCES.md):
#   "field list" = antiwork/gumroad app/modules/purchase/ping_notification.rb (key order and presence),
#                  app/modules/subscription/ping_notification.rb, https://gumroad.com/ping ; bodies encoded
#                  as app/sidekiq/post_to_individual_ping_endpoint_worker.rb posts them (HTTParty form).
#   "alecbw"     = https://github.com/alecbw/Gumroad-Webhook-to-DynamoDB/blob/32d833baeff0c2cf172b3080ac4c0817b75e25ed/README.md
#   "worker spec" = antiwork/gumroad spec/sidekiq/post_to_individual_ping_endpoint_worker_spec.rb


def adapter(*secrets: str, **options: Any) -> GumroadAdapter:
    return GumroadAdapter(secrets or (SECRET,), GumroadOptions(**options))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def request(body: bytes, query: str = "", headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body, query_string=query)


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    return request(body, adapter(secret).sign(body, secret, NOW).query_string)


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def parse_one(body: bytes, **options: Any) -> NormalizedEvent:
    events = adapter(**options).parse(request(body))
    assert len(events) == 1
    return events[0]


def form(body: bytes, **changes: str | None) -> bytes:
    """A fixture body with fields replaced (None drops one); new fields are appended, as Rails would."""
    pairs = parse_qsl(body.decode(), keep_blank_values=True)
    seen = set()
    out = []
    for key, value in pairs:
        if key in changes:
            seen.add(key)
            if changes[key] is None:
                continue
            value = changes[key] or ""
        out.append((key, value))
    out += [(k, v) for k, v in changes.items() if k not in seen and v is not None]
    return urlencode(out).encode()


ADA = CustomerFacts(
    email="ada@example.com",
    customer_id="5550321502811",
    name="Ada Lovelace",
    metadata={"Company": "Acme Ltd", "user_id": "usr_8f3a2c", "utm_source": "newsletter"},
)
ADA_WITHOUT_URL_PARAMS = CustomerFacts(
    email="ada@example.com", customer_id="5550321502811", name="Ada Lovelace", metadata={"Company": "Acme Ltd"}
)


# --- authentication: there is no signature, only a URL token or Basic auth ------------------------------
# No public test vectors exist (Gumroad signs nothing); the only published values are the worker spec's
# Basic-auth header and form encoding, used below.


def test_sign_is_the_url_token_the_merchant_appends() -> None:
    body = fixture("sale.txt")  # field list (SOURCES.md)
    signed_request = adapter().sign(body, SECRET, NOW)
    assert signed_request.query_string == f"token={SECRET}"
    assert signed_request.headers == {}
    assert adapter().content_type() == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.txt")))
def test_sign_then_verify_round_trips_every_fixture(name: str) -> None:
    body = fixture(name)  # field list / alecbw (SOURCES.md)
    adapter().verify(signed(body), NOW)


def test_missing_token_is_missing() -> None:
    body = fixture("sale.txt")  # field list (SOURCES.md)
    with pytest.raises(SignatureError, match=r"^missing token$"):
        adapter().verify(request(body), NOW)
    with pytest.raises(SignatureError, match=r"^missing token$"):
        adapter().verify(request(body, "other=1"), NOW)


def test_wrong_token_is_a_mismatch() -> None:
    body = fixture("sale.txt")  # field list (SOURCES.md)
    with pytest.raises(SignatureError, match=r"^token does not match$"):
        adapter().verify(signed(body, "not-the-secret"), NOW)
    with pytest.raises(SignatureError, match=r"^token does not match$"):
        adapter().verify(request(body, "token="), NOW)
    # a prefix of the secret is not the secret
    with pytest.raises(SignatureError, match=r"^token does not match$"):
        adapter().verify(request(body, f"token={SECRET[:-1]}"), NOW)


def test_the_token_is_found_among_other_query_parameters() -> None:
    body = fixture("sale.txt")  # field list (SOURCES.md)
    adapter().verify(request(body, f"source=gumroad&token={SECRET}&x=1"), NOW)


def test_a_token_with_url_special_characters_round_trips() -> None:
    secret = "a+b/c=d&e f"
    body = fixture("sale.txt")  # field list (SOURCES.md)
    signed_request = signed(body, secret)
    assert signed_request.query_string == "token=a%2Bb%2Fc%3Dd%26e+f"
    adapter(secret).verify(signed_request, NOW)


def test_the_body_is_not_authenticated() -> None:
    # the honest limit of a URL token: anyone holding the URL can post any body (docs: known limits)
    body = fixture("sale.txt")  # field list (SOURCES.md)
    adapter().verify(request(body.replace(b"price=4900", b"price=9999"), f"token={SECRET}"), NOW)


def test_no_timestamp_so_no_tolerance_window() -> None:
    body = fixture("sale.txt")  # field list (SOURCES.md)
    adapter().verify(signed(body), 0.0)
    adapter().verify(signed(body), NOW + 10 * 365 * 86400)


def test_rotation_accepts_old_and_new_token() -> None:
    body = fixture("refund.txt")  # field list (SOURCES.md)
    rotating = adapter("old-token", "new-token")
    rotating.verify(signed(body, "old-token"), NOW)
    rotating.verify(signed(body, "new-token"), NOW)
    with pytest.raises(SignatureError, match="does not match"):
        rotating.verify(signed(body, "third-token"), NOW)


def test_basic_auth_password_is_the_secret() -> None:
    # worker spec "sends URL userinfo as basic auth": http://user:secret@host -> Basic base64("user:secret")
    header = {"authorization": "Basic dXNlcjpzZWNyZXQ="}
    assert base64.b64decode("dXNlcjpzZWNyZXQ=") == b"user:secret"
    body = fixture("sale.txt")  # field list (SOURCES.md)
    adapter("secret").verify(request(body, headers=header), NOW)
    # the user name is free: only the password is compared
    adapter(SECRET).verify(request(body, headers=basic("anything", SECRET)), NOW)
    adapter(SECRET).verify(request(body, headers=basic("", SECRET)), NOW)
    with pytest.raises(SignatureError, match=r"^token does not match$"):
        adapter(SECRET).verify(request(body, headers=basic(SECRET, "wrong")), NOW)
    # `user:pass` as a whole is not the secret either
    with pytest.raises(SignatureError, match=r"^token does not match$"):
        adapter("user:secret").verify(request(body, headers=header), NOW)


def test_either_credential_may_carry_the_secret() -> None:
    body = fixture("sale.txt")  # field list (SOURCES.md)
    adapter().verify(request(body, "token=stale", basic("u", SECRET)), NOW)
    adapter().verify(request(body, f"token={SECRET}", basic("u", "stale")), NOW)
    adapter().verify(request(body, f"token={SECRET}", {"authorization": "Bearer xyz"}), NOW)


@pytest.mark.parametrize(
    "value",
    ["Basic not-base64!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer abc", "Basic", "Basic //8="],
)
def test_malformed_authorization_without_a_token(value: str) -> None:
    body = fixture("sale.txt")  # field list (SOURCES.md)
    with pytest.raises(SignatureError, match=r"^malformed authorization$"):
        adapter().verify(request(body, headers={"authorization": value}), NOW)
    # with a wrong token beside it, the failure is the token's
    with pytest.raises(SignatureError, match=r"^token does not match$"):
        adapter().verify(request(body, "token=nope", {"authorization": value}), NOW)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        GumroadAdapter(["ok-token", ""], GumroadOptions())


def test_registered_under_its_name() -> None:
    assert get_adapter_class("gumroad") is GumroadAdapter


def test_options_are_validated() -> None:
    assert GumroadOptions().seller_id is None
    with pytest.raises(pydantic.ValidationError):
        GumroadOptions.model_validate({"seller": "x"})


# --- parse: sales -------------------------------------------------------------------------------------


def test_sale_with_url_params_custom_fields_and_variants() -> None:
    event = parse_one(fixture("sale.txt"))  # field list (SOURCES.md)
    assert event == NormalizedEvent(
        kind=EventKind.SALE,
        event_type="sale",
        transaction_key=SALE_KEY,
        amount=Decimal("49.00"),
        currency="USD",
        customer=ADA,
        product_id="pHf0m3c2WqK9zTn1sRbA7w==",
        product_type="Tier: Pro",
        test_mode=False,
        occurred_at=datetime(2024, 5, 14, 10, 30, 45, tzinfo=UTC),
    )
    assert str(event.amount) == "49.00"


def test_real_ping_body_from_a_public_repository() -> None:
    # alecbw README @ 32d833b, byte for byte: an older field order, `url_params[_ga]` nested
    event = parse_one(fixture("sale_readme.txt"))
    assert event == NormalizedEvent(
        kind=EventKind.SALE,
        event_type="sale",
        transaction_key="gumroad:sale:GDxsfC0xDX9MI9i2i6d78A==",
        amount=Decimal("1.50"),
        currency="USD",
        customer=CustomerFacts(
            email="test@testing.com",
            metadata={"_ga": "2.6349685.1583997846.1600074293-639960653.1599804853"},
        ),
        product_id="A_LONG_STRING==",
        occurred_at=datetime(2020, 9, 14, 22, 26, 12, tzinfo=UTC),
    )


def test_a_renewal_is_its_own_sale() -> None:
    # field list: is_recurring_charge, subscription_id, recurrence; a new sale_id per charge (SOURCES.md)
    renewal = parse_one(fixture("recurring_charge.txt"))
    first = parse_one(fixture("sale.txt"))  # field list (SOURCES.md)
    assert renewal.kind is EventKind.SALE
    assert renewal.transaction_key == "gumroad:sale:9qL2mXo4TnVb7cRz1yWkEA=="
    assert renewal.transaction_key != first.transaction_key
    assert renewal.amount == Decimal("49.00")
    assert renewal.customer == ADA_WITHOUT_URL_PARAMS
    assert renewal.occurred_at == datetime(2024, 6, 14, 10, 30, 52, tzinfo=UTC)


def test_a_retried_post_is_the_same_sale() -> None:
    # worker: a retry re-posts the same params plus retry_count (SOURCES.md)
    assert parse_one(fixture("sale_retry.txt")) == parse_one(fixture("sale.txt"))


def test_test_purchase_is_test_mode() -> None:
    event = parse_one(fixture("test_sale.txt"))  # field list: `test` when purchaser == seller (SOURCES.md)
    assert event.kind is EventKind.SALE
    assert event.test_mode is True
    assert event.transaction_key == "gumroad:sale:tZ8d0Qx3VnLp5sKe2mRjHw=="
    assert event.customer.metadata["user_id"] == "usr_seller"


def test_dashboard_test_ping_without_resource_name_is_a_test_sale() -> None:
    # User::PingNotification#send_test_ping: the latest sale's payload merged with test: true, no resource_name
    body = form(fixture("sale.txt"), resource_name=None, test="true")  # field list (SOURCES.md)
    event = parse_one(body)
    assert (event.kind, event.event_type, event.test_mode) == (EventKind.SALE, "sale", True)


@pytest.mark.parametrize(
    ("price", "currency", "amount"),
    [
        # the cases: a EUR 10 product and a JPY 1,500 product, priced in USD cents by Gumroad
        ("1085", "eur", Decimal("10.85")),
        ("1005", "jpy", Decimal("10.05")),
        ("1", "usd", Decimal("0.01")),
        # the listing currency does not matter, even when it is not one the bridge knows
        ("4900", "zzz", Decimal("49.00")),
    ],
)
def test_price_is_usd_cents_whatever_the_listing_currency(price: str, currency: str, amount: Decimal) -> None:
    # Ping docs: "price — the price paid, in USD cents"; antiwork/gumroad purchase.rb sets
    # price_cents = displayed_price_usd_cents and ping_notification.rb sends currency: link.price_currency_type
    event = parse_one(form(fixture("sale.txt"), price=price, currency=currency))
    assert (event.amount, event.currency) == (amount, "USD")
    assert isinstance(event.amount, Decimal)


def test_a_refund_names_the_usd_price_of_its_sale() -> None:
    event = parse_one(form(fixture("refund.txt"), price="1005", currency="jpy"))
    assert (event.kind, event.sale_amount, event.currency) == (EventKind.REFUND, Decimal("10.05"), "USD")


def test_gift_receipt_is_priced_by_the_gifter_payment() -> None:
    # field list: the giftee's purchase is pinged with price 0; gift_price is what the gifter paid
    body = form(fixture("sale.txt"), price="0", is_gift_receiver_purchase="true", gift_price="4900")
    assert parse_one(body).amount == Decimal("49.00")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"price": "0"}, "price is 0 (free or fully discounted purchase)"),
        ({"price": "0", "is_gift_receiver_purchase": "true"}, "price is 0 (free or fully discounted purchase)"),
        ({"is_preorder_authorization": "true"}, "pre-order authorization: the card is not charged yet"),
    ],
)
def test_sales_that_are_not_payments_are_ignored(changes: dict[str, str], reason: str) -> None:
    event = parse_one(form(fixture("sale.txt"), **changes))  # field list (SOURCES.md)
    assert (event.kind, event.event_type, event.reason) == (EventKind.IGNORED, "sale", reason)
    assert event.transaction_key is None


def test_url_params_win_over_custom_fields_with_the_same_name() -> None:
    body = fixture("sale.txt") + b"&custom_fields%5Buser_id%5D=typed-by-buyer&custom_fields%5BRole%5D=CTO"
    metadata = parse_one(body).customer.metadata  # field list (SOURCES.md)
    assert metadata == {"Company": "Acme Ltd", "user_id": "usr_8f3a2c", "utm_source": "newsletter", "Role": "CTO"}


def test_bracketed_field_names_are_decoded_as_gumroad_escapes_them() -> None:
    # worker spec "posts to the right endpoint and encodes brackets": the exact body it expects
    body = (
        b"name%20%255Bfor%20field%255D%20%255B%255B%255D%255D%21%40%23%24%25%5E%26=1"
        b"&custom_fields%5Bname%20%255Bfor%20field%255D%20%255B%255B%255D%255D%21%40%23%24%25%5E%26%5D=1"
    )
    event = parse_one(fixture("sale.txt") + b"&" + body)  # field list (SOURCES.md)
    assert event.customer.metadata["name [for field] [[]]!@#$%^&"] == "1"


def test_deeper_nesting_and_arrays_are_not_custom_data() -> None:
    body = fixture("sale.txt") + b"&url_params%5Ba%5D%5Bb%5D=1&url_params%5B%5D=2"  # field list (SOURCES.md)
    assert parse_one(body).customer.metadata == ADA.metadata


def test_a_json_post_reads_like_the_form_post() -> None:
    # Gumroad posts `params.to_json` when the endpoint's content type is JSON (worker, SOURCES.md)
    payload: dict[str, Any] = {}
    for key, value in parse_qsl(fixture("sale.txt").decode(), keep_blank_values=True):
        outer, _, inner = key.partition("[")
        if inner:
            payload.setdefault(outer, {})[inner.rstrip("]")] = value
        else:
            payload[key] = int(value) if value.isdigit() and key == "price" else value
    payload["refunded"] = False
    body = json.dumps(payload).encode()
    assert parse_one(body) == parse_one(fixture("sale.txt"))


def test_product_type_falls_back_to_a_plain_variants_string() -> None:
    body = form(fixture("sale.txt"), **{"variants[Tier]": None, "variants": "(Pro)"})  # field list
    assert parse_one(body).product_type == "(Pro)"
    assert parse_one(form(fixture("sale.txt"), **{"variants[Tier]": None})).product_type is None


def test_an_unreadable_timestamp_is_left_out() -> None:
    event = parse_one(form(fixture("sale.txt"), sale_timestamp="yesterday"))  # field list (SOURCES.md)
    assert event.kind is EventKind.SALE
    assert event.occurred_at is None


def test_seller_id_option_ignores_other_sellers() -> None:
    body = fixture("sale.txt")  # field list (SOURCES.md)
    assert parse_one(body, seller_id="Xk3v9bQ2mD8sTq1wLp0aZg==").kind is EventKind.SALE
    other = parse_one(body, seller_id="someone-else==")
    assert (other.kind, other.reason) == (EventKind.IGNORED, "seller_id is not the seller configured for this endpoint")
    assert parse_one(fixture("refund.txt"), seller_id="someone-else==").kind is EventKind.IGNORED


# --- parse: refunds and disputes ----------------------------------------------------------------------


def test_full_refund_names_the_sale_key() -> None:
    event = parse_one(fixture("refund.txt"))  # field list: resource_name=refund, refunded=true (SOURCES.md)
    assert event == NormalizedEvent(
        kind=EventKind.REFUND,
        event_type="refund",
        transaction_key=SALE_KEY,
        currency="USD",
        customer=ADA_WITHOUT_URL_PARAMS,
        product_id="pHf0m3c2WqK9zTn1sRbA7w==",
        product_type="Tier: Pro",
        full_refund=True,
        sale_amount=Decimal("49.00"),
    )
    # the ping has no refunded amount
    assert event.amount is None and event.refunded_total is None


def test_partial_refund_is_a_refund_that_is_not_full() -> None:
    # Purchase::Refundable#refund_purchase! pings every refund; `refunded` turns true only at the total
    event = parse_one(fixture("refund_partial.txt"))  # field list (SOURCES.md)
    assert (event.kind, event.transaction_key, event.full_refund) == (EventKind.REFUND, SALE_KEY, False)
    assert event.amount is None
    assert parse_one(form(fixture("refund.txt"), refunded=None)).full_refund is None


def test_a_sale_post_of_a_refunded_purchase_is_its_refund() -> None:
    event = parse_one(form(fixture("sale.txt"), refunded="true"))  # field list (SOURCES.md)
    assert (event.kind, event.event_type, event.transaction_key) == (EventKind.REFUND, "sale", SALE_KEY)
    assert event.full_refund is True


def test_dispute_opened() -> None:
    event = parse_one(fixture("dispute.txt"))  # field list: resource_name=dispute, disputed=true (SOURCES.md)
    assert event == NormalizedEvent(
        kind=EventKind.DISPUTE,
        event_type="dispute",
        transaction_key=SALE_KEY,
        currency="USD",
        customer=ADA,
        product_id="pHf0m3c2WqK9zTn1sRbA7w==",
        product_type="Tier: Pro",
        sale_amount=Decimal("49.00"),
        dispute_state=DisputeState.OPENED,
    )


def test_dispute_won() -> None:
    event = parse_one(fixture("dispute_won.txt"))  # field list: resource_name=dispute_won (SOURCES.md)
    assert (event.kind, event.dispute_state, event.transaction_key) == (EventKind.DISPUTE, DisputeState.WON, SALE_KEY)
    assert GumroadAdapter.reports_dispute_outcome is False  # a lost dispute is never announced


def test_sale_posts_carry_the_dispute_state_of_the_purchase() -> None:
    disputed = parse_one(form(fixture("sale.txt"), disputed="true"))  # field list (SOURCES.md)
    assert (disputed.kind, disputed.dispute_state) == (EventKind.DISPUTE, DisputeState.OPENED)
    won = parse_one(form(fixture("sale.txt"), disputed="true", dispute_won="true"))
    assert won.kind is EventKind.SALE


def test_a_refund_without_price_is_still_keyed() -> None:
    event = parse_one(form(fixture("refund.txt"), price=None, currency=None))  # field list (SOURCES.md)
    assert (event.kind, event.transaction_key, event.sale_amount, event.currency) == (
        EventKind.REFUND,
        SALE_KEY,
        None,
        None,
    )


# --- parse: ignored -----------------------------------------------------------------------------------


def test_cancellation_is_ignored() -> None:
    event = parse_one(fixture("cancellation.txt"))  # Subscription::PingNotification field list (SOURCES.md)
    assert event == NormalizedEvent(
        kind=EventKind.IGNORED,
        event_type="cancellation",
        reason="subscription notice; every charge arrives as its own sale",
    )


@pytest.mark.parametrize("resource", ["subscription_ended", "subscription_restarted", "subscription_updated"])
def test_subscription_resources_are_ignored(resource: str) -> None:
    body = form(fixture("cancellation.txt"), resource_name=resource)  # field list (SOURCES.md)
    event = parse_one(body)
    assert (event.kind, event.event_type) == (EventKind.IGNORED, resource)


def test_unknown_resource_is_ignored() -> None:
    event = parse_one(form(fixture("sale.txt"), resource_name="dispute_lost"))  # field list (SOURCES.md)
    assert (event.kind, event.reason) == (EventKind.IGNORED, "resource_name the bridge does not handle")


# --- parse: junk --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "sale post without sale_id"),
        (b"not a form at all", "sale post without sale_id"),
        (b"\xff\xfe", "not UTF-8"),
        (b"sale_id=x&price=4900&currency=usd&email=%FF", "not a form post"),
        (b"{not json", "not valid JSON"),
        (b'{"sale_id": ["x"]}', "sale post without sale_id"),
        (b"refund_id=1&resource_name=refund", "refund post without sale_id"),
        (b"sale_id=x&currency=usd", "sale post without price"),
        (b"sale_id=x&price=12.50&currency=usd", "not a whole number of cents"),
        (b"sale_id=x&price=-100&currency=usd", "not a whole number of cents"),
        (b"sale_id=x&resource_name=refund&price=abc&currency=usd", "not a whole number of cents"),
    ],
)
def test_unreadable_bodies_are_payload_errors(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        adapter().parse(request(body))


def test_a_json_array_is_not_a_ping() -> None:
    with pytest.raises(PayloadError, match="without sale_id"):
        adapter().parse(request(b"[1, 2]"))


# --- delivery ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sale.txt", "sale:FO8TXN-dbxYaBdahG97Y-Q=="),
        ("sale_retry.txt", "sale:FO8TXN-dbxYaBdahG97Y-Q=="),
        ("refund.txt", "refund:FO8TXN-dbxYaBdahG97Y-Q==:refunded"),
        ("refund_partial.txt", "refund:FO8TXN-dbxYaBdahG97Y-Q=="),
        ("dispute.txt", "dispute:FO8TXN-dbxYaBdahG97Y-Q==:disputed"),
        ("dispute_won.txt", "dispute_won:FO8TXN-dbxYaBdahG97Y-Q==:disputed:dispute_won"),
        ("recurring_charge.txt", "sale:9qL2mXo4TnVb7cRz1yWkEA=="),
        ("test_sale.txt", "sale:tZ8d0Qx3VnLp5sKe2mRjHw==:test"),
        ("sale_readme.txt", "sale:GDxsfC0xDX9MI9i2i6d78A=="),
    ],
)
def test_delivery_id_names_resource_purchase_and_flags(name: str, expected: str) -> None:
    assert adapter().delivery_id(request(fixture(name))) == expected  # field list / alecbw (SOURCES.md)


@pytest.mark.parametrize("retry", ["1", "2", "3"])
def test_retry_count_does_not_change_the_delivery_id(retry: str) -> None:
    body = fixture("sale.txt")  # field list (SOURCES.md)
    retried = body + b"&retry_count=" + retry.encode()
    assert adapter().delivery_id(request(retried)) == adapter().delivery_id(request(body))


def test_the_dashboard_test_ping_is_not_a_duplicate_of_the_real_sale() -> None:
    real = fixture("sale.txt")  # field list (SOURCES.md)
    test_ping = form(real, resource_name=None, test="true")
    assert adapter().delivery_id(request(test_ping)) == "sale:FO8TXN-dbxYaBdahG97Y-Q==:test"


def test_without_a_sale_id_the_body_hash_ignores_retry_count() -> None:
    body = fixture("cancellation.txt")  # Subscription::PingNotification field list (SOURCES.md)
    assert adapter().delivery_id(request(body)) == body_hash(body)
    assert adapter().delivery_id(request(body + b"&retry_count=2")) == body_hash(body)
    other = form(body, cancelled_at="2024-08-02T08:15:00Z")
    assert adapter().delivery_id(request(other)) != body_hash(body)


def test_json_body_without_a_sale_id_hashes_without_retry_count() -> None:
    first = json.dumps({"subscription_id": "s1", "resource_name": "cancellation"}).encode()
    retried = json.dumps({"subscription_id": "s1", "resource_name": "cancellation", "retry_count": 1}).encode()
    assert adapter().delivery_id(request(first)) == adapter().delivery_id(request(retried))
    assert adapter().delivery_id(request(first)).startswith("sha256:")


@pytest.mark.parametrize("junk", [b"\xff\xfe", b"{not json", b"", b"[]"])
def test_delivery_id_never_raises_on_junk(junk: bytes) -> None:
    assert adapter().delivery_id(request(junk)) == body_hash(junk)
