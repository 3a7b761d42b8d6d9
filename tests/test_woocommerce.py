"""WooCommerce adapter: the official signature vector, round trips, the creation ping, order states, junk."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.events import CustomerFacts, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import AcknowledgeOnly, PayloadError, SignatureError, WebhookRequest, body_hash
from providers.signatures import sign_hmac
from providers.woocommerce import WooCommerceAdapter, WooCommerceOptions, wp_specialchars_decode
from tests.ledger_kit import LedgerHarness

FIXTURES = Path(__file__).parent / "fixtures" / "woocommerce"
SECRET = "q)N#4b*W9r@vX2m!Lp7e$Tz5"
NOW = 1_700_000_000.0
KEY = "woocommerce:order:727"
SIGNATURE = "x-wc-webhook-signature"
TOPIC = "x-wc-webhook-topic"

# Fixture sources (details and edits in tests/fixtures/woocommerce/SOURCES.md):
#   "docs"  = https://woocommerce.github.io/woocommerce-rest-api-docs/#create-an-order, JSON response example
#             (woocommerce/woocommerce-rest-api-docs source/includes/wp-api-v3/_orders.md @ 08fc1d74)
#   "built" = the docs order re-encoded as WooCommerce sends it (wp_json_encode) with the edits in SOURCES.md
#   "ping"  = woocommerce/woocommerce plugins/woocommerce/includes/class-wc-webhook.php, deliver_ping()
JOHN = CustomerFacts(
    email="john.doe@example.com",
    customer_id="12",
    name="John Doe",
    metadata={"_download_permissions_granted": "yes", "_partnero_customer_key": "usr_8f3a2c"},
)


def adapter(*secrets: str, **options: Any) -> WooCommerceAdapter:
    return WooCommerceAdapter(secrets or (SECRET,), WooCommerceOptions(**options))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def order(name: str = "order_paid.json") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture(name), object_pairs_hook=OrderedDict, parse_float=Decimal)
    return loaded


def encode(payload: dict[str, Any]) -> bytes:
    """A body as WooCommerce sends it: wp_json_encode (compact, `/` escaped)."""
    return json.dumps(payload, separators=(",", ":"), default=str).replace("/", "\\/").encode()


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def delivery(body: bytes, topic: str = "order.updated") -> WebhookRequest:
    return request(body, {TOPIC: topic})


def signed(body: bytes, secret: str = SECRET, **options: Any) -> WebhookRequest:
    return request(body, adapter(secret, **options).sign(body, secret, NOW).headers)


def parse(body: bytes, topic: str = "order.updated", **options: Any) -> list[NormalizedEvent]:
    return adapter(**options).parse(delivery(body, topic))


def parse_one(body: bytes, topic: str = "order.updated", **options: Any) -> NormalizedEvent:
    events = parse(body, topic, **options)
    assert len(events) == 1
    return events[0]


def wc_signature(key: bytes, body: bytes) -> str:
    """What WC_Webhook::generate_signature() computes: base64(hash_hmac('sha256', body, key, true))."""
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


# --- signature: the official vector first --------------------------------------------------------------


def test_official_empty_key_vector() -> None:
    # woocommerce/woocommerce @ 6147c5e6, tests/legacy/unit-tests/webhooks/crud.php::test_generate_signature:
    # a new WC_Webhook (secret '') -> generate_signature('secret')
    vector = "GBDo00G55h6IiV+6CxqivQPLbI//KzaOZm747971tPs="
    assert sign_hmac(b"", b"secret", "sha256", "base64") == vector
    assert adapter().sign(b"secret", "", NOW).headers[SIGNATURE] == vector


def test_an_empty_configured_secret_is_refused() -> None:
    # the vector above is computable by anyone: an endpoint must never accept it
    with pytest.raises(ValueError, match="empty"):
        WooCommerceAdapter(["ok-secret", ""], WooCommerceOptions())


def test_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = fixture("order_paid.json")  # built
    headers = adapter().sign(body, SECRET, NOW).headers
    assert headers[SIGNATURE] == wc_signature(SECRET.encode(), body)
    adapter().verify(request(body, {SIGNATURE: wc_signature(SECRET.encode(), body)}), NOW)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("order_*.json")))
def test_sign_verify_round_trip(name: str) -> None:
    body = fixture(name)  # docs / built
    adapter().verify(signed(body), NOW)


def test_sign_sends_the_headers_woocommerce_sends() -> None:
    headers = adapter().sign(fixture("order_paid.json"), SECRET, NOW).headers  # built
    assert headers[TOPIC] == "order.updated"
    assert headers["x-wc-webhook-resource"] == "order"
    assert headers["x-wc-webhook-event"] == "updated"
    assert headers["x-wc-webhook-id"] == "1"
    assert len(headers["x-wc-webhook-delivery-id"]) == 32
    assert headers["user-agent"].startswith("WooCommerce/")


def test_wrong_secret_is_a_mismatch() -> None:
    body = fixture("order_paid.json")  # built
    with pytest.raises(SignatureError, match=r"^X-WC-Webhook-Signature does not match$"):
        adapter().verify(signed(body, "not-the-secret"), NOW)


def test_missing_signature_is_refused() -> None:
    body = fixture("order_paid.json")  # built
    with pytest.raises(SignatureError, match=r"^missing X-WC-Webhook-Signature$"):
        adapter().verify(delivery(body), NOW)


def test_tampered_body_is_refused() -> None:
    body = fixture("order_paid.json")  # built
    headers = adapter().sign(body, SECRET, NOW).headers
    tampered = body.replace(b'"total":"29.35"', b'"total":"99.35"')
    assert tampered != body
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(tampered, headers), NOW)
    # re-serialised JSON is not the signed body either
    reformatted = json.dumps(json.loads(body)).encode()
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(reformatted, headers), NOW)


@pytest.mark.parametrize("value", ["not base64!", "abc", "===="])
def test_malformed_signature_is_refused(value: str) -> None:
    body = fixture("order_paid.json")  # built
    with pytest.raises(SignatureError, match=r"^malformed X-WC-Webhook-Signature$"):
        adapter().verify(request(body, {SIGNATURE: value, TOPIC: "order.updated"}), NOW)


def test_a_hex_signature_is_not_woocommerces_encoding() -> None:
    body = fixture("order_paid.json")  # built
    hex_digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(body, {SIGNATURE: hex_digest}), NOW)


def test_rotation_accepts_old_and_new_secret() -> None:
    body = fixture("order_refunded.json")  # built
    rotating = adapter("old-secret", "new-secret")
    rotating.verify(signed(body, "old-secret"), NOW)
    rotating.verify(signed(body, "new-secret"), NOW)
    with pytest.raises(SignatureError, match="does not match"):
        rotating.verify(signed(body, "third-secret"), NOW)


def test_no_timestamp_so_no_tolerance_window() -> None:
    body = fixture("order_paid.json")  # built
    adapter().verify(signed(body), 0.0)
    adapter().verify(signed(body), NOW + 10 * 365 * 86400)


def test_a_secret_copied_with_html_entities_still_verifies() -> None:
    # WooCommerce signs with wp_specialchars_decode(secret, ENT_QUOTES)
    body = fixture("order_paid.json")  # built
    genuine = {SIGNATURE: wc_signature(b"a&b\"c'd<e>", body)}
    adapter("a&amp;b&quot;c&#039;d&lt;e&gt;").verify(request(body, genuine), NOW)
    adapter("a&b\"c'd<e>").verify(request(body, genuine), NOW)
    with pytest.raises(SignatureError):
        adapter("a&amp;b").verify(request(body, genuine), NOW)


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("plain", "plain"),
        ("&amp;&lt;&gt;&quot;&#039;", "&<>\"'"),
        ("&#39;&#0039;&#x27;&#X0027;", "''''"),
        ("&#34;&#x22;&#60;&#62;&#38;&#x26;", '""<>&&'),
        # one pass only, like PHP's strtr: a decoded `&` does not start a new entity
        ("&amp;lt;", "&lt;"),
        # only &, <, >, " and ' are decoded
        ("&nbsp;&eacute;&#x3c;&#169;", "&nbsp;&eacute;&#x3c;&#169;"),
    ],
)
def test_wp_specialchars_decode(text: str, decoded: str) -> None:
    assert wp_specialchars_decode(text) == decoded


def test_signature_algorithm_option() -> None:
    # the filter woocommerce_webhook_hash_algorithm can switch the HMAC to another hash
    body = fixture("order_paid.json")  # built
    sha512 = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha512).digest()).decode()
    assert adapter(signature_algorithm="sha512").sign(body, SECRET, NOW).headers[SIGNATURE] == sha512
    adapter(signature_algorithm="sha512").verify(request(body, {SIGNATURE: sha512}), NOW)
    with pytest.raises(SignatureError):
        adapter().verify(request(body, {SIGNATURE: sha512}), NOW)


# --- the unsigned creation ping -----------------------------------------------------------------------


def test_the_creation_ping_is_acknowledged_unstored() -> None:
    body = fixture("ping.txt")  # ping: 'webhook_id=' . $this->get_id(), no X-WC headers
    assert body == b"webhook_id=12"
    with pytest.raises(AcknowledgeOnly, match="ping"):
        adapter().verify(request(body), NOW)
    with pytest.raises(AcknowledgeOnly):
        adapter().verify(request(body, {"content-type": "application/x-www-form-urlencoded"}), NOW)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"webhook_id=12&extra=1", {}),
        (b"webhook_id=", {}),
        (b"webhook_id=12\n", {}),
        (b"webhook_id=abc", {}),
        (b"webhook_id=1234567890123456789012", {}),
        (b"Webhook_id=12", {}),
        (b'{"webhook_id": 12}', {}),
        (b"", {}),
        # the ping shape with what a ping never has
        (b"webhook_id=12", {TOPIC: "order.updated"}),
        (b"webhook_id=12", {SIGNATURE: "AAAA"}),
        (b"webhook_id=12", {SIGNATURE: ""}),
    ],
)
def test_anything_else_unsigned_is_refused(body: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        adapter().verify(request(body, headers), NOW)


def test_a_ping_body_reaching_the_parser_is_ignored() -> None:
    event = parse_one(fixture("ping.txt"))  # ping
    assert event.kind is EventKind.IGNORED and "ping" in (event.reason or "")


# --- sales --------------------------------------------------------------------------------------------


def test_paid_docs_order_is_a_sale() -> None:
    event = parse_one(fixture("order_docs.json"))  # docs
    assert event.kind is EventKind.SALE
    assert event.event_type == "order.updated"
    assert event.transaction_key == KEY
    assert event.amount == Decimal("29.35")
    assert event.currency == "USD"
    # a guest checkout: customer_id 0 is no WordPress user
    assert event.customer == CustomerFacts(
        email="john.doe@example.com",
        customer_id=None,
        name="John Doe",
        metadata={"_download_permissions_granted": "yes"},
    )
    # two line items: no single product to apply a per-product rate to
    assert event.product_id is None
    assert event.test_mode is False
    assert event.occurred_at == datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)


def test_paid_order_with_the_customer_key_in_meta_data() -> None:
    event = parse_one(fixture("order_paid.json"))  # built
    assert event.kind is EventKind.SALE
    assert event.transaction_key == KEY
    assert event.amount == Decimal("29.35")
    assert event.customer == JOHN
    assert event.customer.metadata["_partnero_customer_key"] == "usr_8f3a2c"


def test_created_and_updated_announce_one_sale_under_one_key() -> None:
    body = fixture("order_paid.json")  # built
    created = parse_one(body, "order.created")
    updated = parse_one(body, "order.updated")
    edited = order()
    edited["status"] = "completed"
    edited["date_completed_gmt"] = "2017-03-25T08:00:00"
    completed = parse_one(encode(edited))
    assert created.kind is updated.kind is completed.kind is EventKind.SALE
    assert created.transaction_key == updated.transaction_key == completed.transaction_key == KEY
    assert created.amount == updated.amount == completed.amount == Decimal("29.35")


@pytest.mark.parametrize("status", ["pending", "on-hold", "failed", "checkout-draft", "trash"])
def test_unpaid_statuses_are_ignored(status: str) -> None:
    edited = order("order_pending.json")  # built
    edited["status"] = status
    event = parse_one(encode(edited), "order.created")
    assert event.kind is EventKind.IGNORED
    assert event.reason == f"order status {status}: not paid"


def test_pending_fixture_is_ignored() -> None:
    event = parse_one(fixture("order_pending.json"), "order.created")  # built
    assert event.kind is EventKind.IGNORED and event.event_type == "order.created"


@pytest.mark.parametrize("field", ["date_paid", "date_paid_gmt"])
def test_a_paid_status_needs_a_date_paid(field: str) -> None:
    edited = order()  # built
    edited["date_paid"] = None
    edited["date_paid_gmt"] = None
    event = parse_one(encode(edited))
    assert event.kind is EventKind.IGNORED and "without date_paid" in (event.reason or "")
    # either date is enough
    edited[field] = "2017-03-22T19:28:08"
    assert parse_one(encode(edited)).kind is EventKind.SALE


def test_custom_paid_statuses() -> None:
    edited = order()  # built
    edited["status"] = "shipped"
    assert parse_one(encode(edited)).kind is EventKind.IGNORED
    event = parse_one(encode(edited), paid_statuses=["processing", "completed", "wc-shipped"])
    assert event.kind is EventKind.SALE and event.transaction_key == KEY


@pytest.mark.parametrize("statuses", [[], [""], ["processing", "refunded"], ["cancelled"]])
def test_paid_statuses_must_be_paid_statuses(statuses: list[str]) -> None:
    with pytest.raises(ValidationError):
        WooCommerceOptions(paid_statuses=statuses)


def test_single_item_order_names_its_product() -> None:
    edited = order()  # built
    edited["line_items"] = edited["line_items"][:1]
    assert parse_one(encode(edited)).product_id == "93"


def test_free_order_is_ignored() -> None:
    edited = order()  # built
    edited["total"] = "0.00"
    event = parse_one(encode(edited))
    assert event.kind is EventKind.IGNORED and "total is 0" in (event.reason or "")


def test_zero_decimal_currency() -> None:
    edited = order()  # built
    edited["currency"] = "JPY"
    edited["total"] = "1500"
    event = parse_one(encode(edited))
    assert event.amount == Decimal("1500") and event.currency == "JPY"


def test_shop_option_names_the_shop_in_the_key() -> None:
    body = fixture("order_paid.json")  # built
    assert parse_one(body, shop="eu-shop").transaction_key == "woocommerce:eu-shop:order:727"
    assert parse(fixture("order_refunded.json"), shop="eu-shop")[0].transaction_key == "woocommerce:eu-shop:order:727"
    with pytest.raises(ValidationError):
        WooCommerceOptions(shop="eu:shop")


def test_sandbox_option_marks_every_event_test_mode() -> None:
    assert parse_one(fixture("order_paid.json")).test_mode is False  # built
    assert parse_one(fixture("order_paid.json"), sandbox=True).test_mode is True
    assert parse(fixture("order_refunded.json"), sandbox=True)[0].test_mode is True


@pytest.mark.parametrize(
    ("meta_data", "expected"),
    [
        (
            [{"id": 1, "key": "user_id", "value": "u1"}, {"id": 2, "key": "user_id", "value": "u2"}],
            {"user_id": "u1"},
        ),
        (
            [
                {"id": 1, "key": "n", "value": 42},
                {"id": 2, "key": "flag", "value": True},
                {"id": 3, "key": "nested", "value": {"a": 1}},
                {"id": 4, "key": "list", "value": [1]},
                {"id": 5, "key": "none", "value": None},
                {"id": 6, "value": "no key"},
                "not an object",
            ],
            {"n": "42", "flag": "true"},
        ),
        ("not a list", {}),
    ],
)
def test_meta_data_becomes_metadata(meta_data: Any, expected: dict[str, str]) -> None:
    edited = order()  # built
    edited["meta_data"] = meta_data
    assert dict(parse_one(encode(edited)).customer.metadata) == expected


# --- refunds ------------------------------------------------------------------------------------------


def test_refunded_order_is_a_full_refund_of_the_sale() -> None:
    event = parse_one(fixture("order_refunded.json"))  # built
    assert event.kind is EventKind.REFUND
    assert event.transaction_key == KEY
    assert event.currency == "USD"
    assert event.refunded_total == Decimal("29.35")
    assert event.sale_amount == Decimal("29.35")
    assert event.full_refund is True
    assert event.amount is None and event.refund_id is None
    assert event.customer == JOHN
    assert event.occurred_at == datetime(2017, 3, 24, 13, 15, 41, tzinfo=UTC)


def test_partial_refund_comes_with_the_sale_it_reduces() -> None:
    sale, refund = parse(fixture("order_refunded_partial.json"))  # built
    assert sale.kind is EventKind.SALE and sale.transaction_key == KEY and sale.amount == Decimal("29.35")
    assert refund.kind is EventKind.REFUND and refund.transaction_key == KEY
    assert refund.refunded_total == Decimal("10.00")
    assert refund.sale_amount == Decimal("29.35")
    assert refund.full_refund is False


def test_the_order_tax_is_kept_out_of_the_commission_and_refunds_take_their_share(tmp_path: Path) -> None:
    # REST API order (SOURCES.md): total 29.35 of which total_tax 1.35; refunds[] only has each gross total
    sale, refund = parse(fixture("order_refunded_partial.json"))
    assert (sale.tax, refund.sale_tax) == (Decimal("1.35"), Decimal("1.35"))
    h = LedgerHarness(tmp_path / "l.db", customer_key=["email"])
    try:
        h.apply(sale)
        assert h.live_amount() == Decimal("28.00")
        h.apply(refund)
        # 10.00 back of 29.35 takes off 10.00 * 28.00 / 29.35 = 9.54
        assert h.live_amount() == Decimal("18.46")
    finally:
        h.close()


def test_refunds_are_cumulative_and_full_once_they_reach_the_total() -> None:
    edited = order("order_refunded_partial.json")  # built
    edited["refunds"].append({"id": 731, "reason": "", "total": "-19.35"})
    sale, refund = parse(encode(edited))
    assert sale.kind is EventKind.SALE
    assert refund.refunded_total == Decimal("29.35") and refund.full_refund is True


def test_refunded_status_without_refund_entries_is_still_full() -> None:
    edited = order("order_refunded.json")  # built
    edited["refunds"] = []
    event = parse_one(encode(edited))
    assert event.kind is EventKind.REFUND and event.full_refund is True and event.refunded_total is None


def test_positive_refund_totals_are_read_as_amounts() -> None:
    edited = order("order_refunded_partial.json")  # built
    edited["refunds"] = [{"id": 728, "reason": "", "total": "10.00"}]
    assert parse(encode(edited))[1].refunded_total == Decimal("10.00")


def test_cancelled_after_payment_reverses_the_sale_by_default() -> None:
    edited = order()  # built
    edited["status"] = "cancelled"
    event = parse_one(encode(edited))
    assert event.kind is EventKind.REFUND and event.full_refund is True and event.transaction_key == KEY
    kept = parse_one(encode(edited), cancelled_after_payment="ignore")
    assert kept.kind is EventKind.IGNORED and "cancelled_after_payment" in (kept.reason or "")


def test_cancelled_before_payment_is_ignored() -> None:
    edited = order("order_pending.json")  # built
    edited["status"] = "cancelled"
    event = parse_one(encode(edited))
    assert event.kind is EventKind.IGNORED and event.reason == "order cancelled before payment"


# --- topics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("order.deleted", "trash"),
        ("order.restored", "trash"),
        ("action.woocommerce_order_refunded", "only an id"),
        ("subscription.created", "renewal"),
        ("product.updated", "not an order"),
        ("coupon.created", "not an order"),
        ("customer.created", "not an order"),
        ("something.else", "not used"),
    ],
)
def test_other_topics_are_ignored_with_a_reason(topic: str, reason: str) -> None:
    event = parse_one(fixture("order_paid.json"), topic)  # built
    assert event.kind is EventKind.IGNORED and event.event_type == topic
    assert reason in (event.reason or "")


def test_action_topic_body_is_ignored() -> None:
    body = b'{"action":"woocommerce_order_refunded","arg":727}'
    assert parse_one(body, "action.woocommerce_order_refunded").kind is EventKind.IGNORED


def test_an_order_without_topic_header_reads_as_order_updated() -> None:
    # a REST API order fetched for reconciliation carries no webhook headers
    events = adapter().parse(request(fixture("order_docs.json")))  # docs
    assert [e.kind for e in events] == [EventKind.SALE]
    assert events[0].event_type == "order.updated"
    with pytest.raises(PayloadError, match="X-WC-Webhook-Topic"):
        adapter().parse(request(b'{"id": 93, "name": "Woo Single #1"}'))


# --- unreadable bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[]", b'"order"', b"{}", b'{"id": 727}', b"[" * 100_000 + b"]" * 100_000],
)
def test_unreadable_bodies_raise_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(delivery(body))


def _set(field: str, value: Any) -> dict[str, Any]:
    edited = order()
    edited[field] = value
    return edited


@pytest.mark.parametrize(
    "payload",
    [
        _set("id", None),
        _set("id", True),
        _set("id", ""),
        _set("total", None),
        _set("total", "twenty"),
        _set("total", "1e999999999"),
        _set("total", "-5.00"),
        _set("total", True),
        _set("currency", None),
        _set("currency", "ZZZ"),
        _set("status", 5),
        _set("refunds", "none"),
        _set("refunds", [{"id": 1}]),
        _set("refunds", ["-1.00"]),
        _set("refunds", [{"id": 1, "total": "NaN"}]),
    ],
)
def test_paid_orders_with_bad_fields_raise_payload_error(payload: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        adapter().parse(delivery(encode(payload)))


# --- delivery id, registry, options -------------------------------------------------------------------


def test_delivery_id_is_the_body_hash_not_the_delivery_header() -> None:
    # X-WC-Webhook-Delivery-ID is wp_hash(webhook id . current second): two orders delivered by one
    # webhook in the same second share it. Deduplicating on it would drop the second order.
    paid, refunded = fixture("order_paid.json"), fixture("order_refunded.json")  # built
    same_second = adapter().sign(paid, SECRET, NOW).headers
    other = adapter().sign(refunded, SECRET, NOW).headers
    assert same_second["x-wc-webhook-delivery-id"] == other["x-wc-webhook-delivery-id"]
    assert adapter().delivery_id(request(paid, same_second)) == body_hash(paid)
    assert adapter().delivery_id(request(refunded, other)) == body_hash(refunded)
    assert body_hash(paid) != body_hash(refunded)


@pytest.mark.parametrize("body", [b"", b"junk", b"\xff", b"webhook_id=1", b"[" * 100_000])
def test_delivery_id_never_raises(body: bytes) -> None:
    assert adapter().delivery_id(request(body)) == body_hash(body)


def test_registry_finds_the_adapter() -> None:
    assert get_adapter_class("woocommerce") is WooCommerceAdapter


def test_options_forbid_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        WooCommerceAdapter.Options.model_validate({"key_scheme": "standard"})
    with pytest.raises(ValidationError):
        WooCommerceAdapter.Options.model_validate({"signature_algorithm": "md5"})
