"""FastSpring adapter: signature vector and round trips, batches, parsing of real samples, junk bodies."""

from __future__ import annotations

import base64
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
from providers.fastspring import FastSpringAdapter
from providers.signatures import sign_hmac
from tests.ledger_kit import LedgerHarness

FIXTURES = Path(__file__).parent / "fixtures" / "fastspring"
SECRET = "my HMAC SHA256 secret"
OLD_SECRET = "the secret before rotation"
NOW = 1_505_765_990.0

# RFC 4231 test case 2 (HMAC-SHA256), in the base64 form FastSpring sends
RFC4231_KEY = "Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_BASE64 = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="

ORDER = "fastspring:order:FWdPzftgReSxl2CswuQQ4w"


def adapter(*secrets: str) -> FastSpringAdapter:
    return FastSpringAdapter(secrets or (SECRET,), AdapterOptions())


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def dump(payload: Any) -> bytes:
    """JSON with every Decimal written as the number it is (json.dumps alone would quote it)."""
    text = json.dumps(payload, default=lambda d: f"__decimal__{d}__")
    return re.sub(r'"__decimal__(.*?)__"', r"\1", text).encode()


def edited(name: str, edit: Any) -> bytes:
    payload = json.loads(fixture(name), parse_float=Decimal)
    edit(payload)
    return dump(payload)


def data_of(payload: dict[str, Any], index: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = payload["events"][index]["data"]
    return data


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    return request(body, adapter(secret).sign(body, secret, NOW).headers)


def parse(body: bytes) -> list[NormalizedEvent]:
    return adapter().parse(request(body))


def parse_one(body: bytes) -> NormalizedEvent:
    events = parse(body)
    assert len(events) == 1
    return events[0]


# --- signature -----------------------------------------------------------------------------------


def test_rfc4231_case_2_vector_in_base64() -> None:
    assert sign_hmac(RFC4231_KEY.encode(), RFC4231_DATA, "sha256", "base64") == RFC4231_BASE64
    headers = adapter(RFC4231_KEY).sign(RFC4231_DATA, RFC4231_KEY, NOW).headers
    assert headers == {"x-fs-signature": RFC4231_BASE64}
    adapter(RFC4231_KEY).verify(request(RFC4231_DATA, headers), NOW)


def test_signature_is_base64_hmac_of_the_raw_body_with_the_utf8_secret() -> None:
    body = fixture("order_completed.json")
    expected = base64.b64encode(hmac.new(SECRET.encode("utf-8"), body, hashlib.sha256).digest()).decode()
    assert adapter().sign(body, SECRET, NOW).headers["x-fs-signature"] == expected
    adapter().verify(request(body, {"x-fs-signature": expected}), NOW)


def test_hex_digest_is_not_accepted() -> None:
    # the right HMAC in the wrong encoding (hex, as Lemon Squeezy sends it) is not FastSpring's
    body = fixture("order_completed.json")
    hex_digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError):
        adapter().verify(request(body, {"x-fs-signature": hex_digest}), NOW)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "e2e.json"))
def test_sign_verify_round_trip(name: str) -> None:
    adapter().verify(signed(fixture(name)), NOW)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureError, match="X-FS-Signature does not match"):
        adapter().verify(signed(fixture("order_completed.json"), "somebody else's secret"), NOW)


def test_unsigned_request_is_rejected() -> None:
    # FastSpring sends no header when the webhook has no secret: the bridge does not accept that
    with pytest.raises(SignatureError, match="missing X-FS-Signature"):
        adapter().verify(request(fixture("order_completed.json")), NOW)


def test_tampered_body_is_rejected() -> None:
    body = fixture("order_completed.json")
    genuine = signed(body)
    tampered = body.replace(b'"total": 300.0', b'"total": 900.0')
    assert tampered != body
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(tampered, dict(genuine.headers)), NOW)


@pytest.mark.parametrize("header", ["not base64!", "sha256=" + RFC4231_BASE64, "W9zB*"])
def test_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(SignatureError, match="malformed X-FS-Signature"):
        adapter().verify(request(b"{}", {"x-fs-signature": header}), NOW)


def test_truncated_signature_is_a_mismatch() -> None:
    body = fixture("order_completed.json")
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()[:16]
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(request(body, {"x-fs-signature": base64.b64encode(digest).decode()}), NOW)


def test_rotation_accepts_old_and_new_secret() -> None:
    body = fixture("return_created.json")
    both = adapter(SECRET, OLD_SECRET)
    both.verify(signed(body, SECRET), NOW)
    both.verify(signed(body, OLD_SECRET), NOW)
    with pytest.raises(SignatureError):
        both.verify(signed(body, "a third secret"), NOW)
    with pytest.raises(SignatureError):
        adapter(SECRET).verify(signed(body, OLD_SECRET), NOW)


def test_no_timestamp_so_no_tolerance() -> None:
    # FastSpring retries an event for days with the same body and signature
    adapter().verify(signed(fixture("order_completed.json")), NOW + 7 * 24 * 3600)


def test_empty_secret_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="empty"):
        FastSpringAdapter([""], AdapterOptions())


# --- sales ---------------------------------------------------------------------------------------


def test_order_completed_is_a_sale_of_the_order() -> None:
    # woocommerce-fastspring-payment-gateway sample, aligned with the return sample (SOURCES.md)
    event = parse_one(fixture("order_completed.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "order.completed"
    assert event.transaction_key == ORDER
    assert event.amount == Decimal("300.00")
    assert event.currency == "USD"
    assert event.customer.email == "email@example.com"
    assert event.customer.customer_id == "NbNDzguWR5-Dv9Rlxg7xsw"
    assert event.customer.external_id is None
    assert event.customer.name == "asd asdsadasda"
    assert event.customer.metadata == {"user_id": "usr_1001"}
    assert event.product_id == "sample-virtual-thing"
    assert event.product_type == "one_time"
    assert event.test_mode is False
    assert event.occurred_at == datetime(2017, 9, 12, 4, 7, 48, 836000, tzinfo=UTC)


def test_order_id_falls_back_to_the_backward_compatible_id() -> None:
    event = parse_one(edited("order_completed.json", _drop("order")))
    assert event.transaction_key == ORDER


def test_test_order_with_webhook_expansion() -> None:
    # archrebel/fastspring-webhooks event-order-completed.json, faithful: a real test-store order
    event = parse_one(fixture("order_completed_test.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == "fastspring:order:EBRltgSoSOu5sOHc-xn-wQ"
    assert event.amount == Decimal("187.00")
    assert event.currency == "EUR"
    assert event.customer.email == "john.doe@gmail.com"
    assert event.customer.customer_id == "ZVTiqogRRWaJ5ACD8c6fLg"
    assert event.customer.metadata == {}
    # the free cross-sell item (subtotal 0) does not name the sale
    assert event.product_id == "falcon-plus-bonus-package-individual-license"
    assert event.product_type == "subscription"
    assert event.test_mode is True


def test_account_lookup_custom_is_the_external_id() -> None:
    def add_lookup(payload: dict[str, Any]) -> None:
        data_of(payload)["account"]["lookup"]["custom"] = "user-42"

    # archrebel event-order-completed.json with the account's custom lookup id set
    event = parse_one(edited("order_completed_test.json", add_lookup))
    assert event.customer.external_id == "user-42"
    assert event.customer.customer_id == "ZVTiqogRRWaJ5ACD8c6fLg"


def test_tags_are_stringified_and_nested_values_skipped() -> None:
    def tags(payload: dict[str, Any]) -> None:
        data_of(payload)["tags"] = {"user_id": 42, "vip": True, "ratio": Decimal("1.50"), "nested": {"a": 1}, "n": None}

    event = parse_one(edited("order_completed.json", tags))
    assert event.customer.metadata == {"user_id": "42", "vip": "true", "ratio": "1.50"}


def test_an_order_names_the_tax_inside_its_total() -> None:
    # order.completed fields total / tax / subtotal (SOURCES.md): 300.00 + 57.00 tax
    def taxed(payload: dict[str, Any]) -> None:
        data = data_of(payload)
        data["tax"], data["total"], data["subtotal"] = Decimal("57.00"), Decimal("357.00"), Decimal("300.0")

    event = parse_one(edited("order_completed.json", taxed))
    assert (event.amount, event.tax) == (Decimal("357.00"), Decimal("57.00"))


def test_rebill_is_a_sale_of_the_rebill_order() -> None:
    # archrebel subscriptionChargeCompleted.json (Webhook Expansion on), wrapped in {"events": [...]}
    event = parse_one(fixture("subscription_charge_completed.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "subscription.charge.completed"
    assert event.transaction_key == "fastspring:order:f4AD0ASGT-aLxvCgZhwqYQ"
    assert event.amount == Decimal("14.95")
    assert event.currency == "USD"
    assert event.customer.email == "ne1@all.com"
    assert event.customer.customer_id == "N8FjcSWcQNeYCc-suM1O8g"
    assert event.customer.name == "Leeroy Jenkins"
    assert event.customer.metadata == {}
    assert event.product_id == "radar-monthly"
    assert event.product_type == "subscription"
    assert event.test_mode is True


def test_rebill_without_expansion_uses_the_order_id() -> None:
    def thin(payload: dict[str, Any]) -> None:
        data = data_of(payload)
        data["order"], data["account"], data["subscription"] = "f4AD0ASGT-aLxvCgZhwqYQ", "N8Fj", "D6_G"

    event = parse_one(edited("subscription_charge_completed.json", thin))
    assert event.transaction_key == "fastspring:order:f4AD0ASGT-aLxvCgZhwqYQ"
    assert event.amount == Decimal("14.95")
    assert event.customer.customer_id == "N8Fj"
    assert event.customer.email is None


def test_only_an_expanded_rebill_names_its_tax() -> None:
    expanded = parse_one(fixture("subscription_charge_completed.json"))
    assert (expanded.amount, expanded.tax) == (Decimal("14.95"), Decimal("0.00"))
    body = edited("subscription_charge_completed.json", lambda p: data_of(p).update(order="f4AD0ASGT-aLxvCgZhwqYQ"))
    assert (parse_one(body).amount, parse_one(body).tax) == (Decimal("14.95"), None)


def test_first_order_and_rebill_have_distinct_keys_and_a_repeat_has_the_same() -> None:
    # order.completed books the first charge, each rebill is its own order: no double count, and an
    # order announced twice (a manual resend) keeps its key
    first = parse_one(fixture("order_completed.json"))
    again = parse_one(fixture("order_completed.json"))
    rebill = parse_one(fixture("subscription_charge_completed.json"))
    assert first.transaction_key == again.transaction_key == ORDER
    assert rebill.transaction_key != first.transaction_key


def test_rebill_that_names_the_first_order_shares_its_key() -> None:
    def first_order(payload: dict[str, Any]) -> None:
        data_of(payload)["order"]["id"] = data_of(payload)["order"]["order"] = "FWdPzftgReSxl2CswuQQ4w"

    rebill = parse_one(edited("subscription_charge_completed.json", first_order))
    assert rebill.transaction_key == parse_one(fixture("order_completed.json")).transaction_key


@pytest.mark.parametrize(
    ("name", "edit", "reason"),
    [
        ("order_completed.json", lambda p: data_of(p).update(completed=False), "order not completed"),
        ("order_completed.json", lambda p: data_of(p).update(total=Decimal("0.0")), "nothing was paid"),
        ("subscription_charge_completed.json", lambda p: data_of(p).update(status="failed"), "not successful"),
        ("subscription_charge_completed.json", lambda p: data_of(p).update(total=0), "nothing was paid"),
        ("return_created.json", lambda p: data_of(p).update(completed=False), "return not completed"),
    ],
)
def test_unpaid_or_unfinished_events_are_ignored(name: str, edit: Any, reason: str) -> None:
    event = parse_one(edited(name, edit))
    assert event.kind is EventKind.IGNORED
    assert event.reason is not None and reason in event.reason


def test_zero_decimal_currency_keeps_its_exponent() -> None:
    def yen(payload: dict[str, Any]) -> None:
        data_of(payload).update(currency="JPY", total=4500)

    event = parse_one(edited("order_completed.json", yen))
    assert event.amount == Decimal("4500")
    assert event.currency == "JPY"


# --- refunds and chargebacks ---------------------------------------------------------------------


def test_return_created_refunds_the_original_order() -> None:
    # woocommerce-fastspring-payment-gateway return.created sample, live flags set to true
    event = parse_one(fixture("return_created.json"))
    assert event.kind is EventKind.REFUND
    assert event.event_type == "return.created"
    assert event.transaction_key == ORDER
    assert event.amount == Decimal("300.00")
    assert event.currency == "USD"
    assert event.sale_amount == Decimal("300.00")
    assert event.full_refund is True
    assert event.refunded_total is None
    assert event.refund_id == "qWIaFaLlRgu6NYs7MgHkGA"
    assert event.reason == "Product Not As Expected"
    assert event.customer.email == "email@example.com"
    assert event.test_mode is False


def test_sale_and_its_return_share_the_key() -> None:
    sale = parse_one(fixture("order_completed.json"))
    refund = parse_one(fixture("return_created.json"))
    assert sale.transaction_key == refund.transaction_key
    assert sale.amount == refund.sale_amount


def test_partial_return_reports_this_return_and_its_id() -> None:
    def partial(payload: dict[str, Any]) -> None:
        data_of(payload).update(totalReturn=Decimal("75.50"), subtotal=Decimal("75.50"))

    event = parse_one(edited("return_created.json", partial))
    assert event.amount == Decimal("75.50")
    assert event.sale_amount == Decimal("300.00")
    assert event.full_refund is False
    assert event.refund_id == "qWIaFaLlRgu6NYs7MgHkGA"


def test_a_return_names_its_own_tax_and_its_orders(tmp_path: Path) -> None:
    # return.created fields totalReturn / tax / subtotal and the expanded original order (SOURCES.md)
    def taxed_order(payload: dict[str, Any]) -> None:
        data_of(payload).update(total=Decimal("357.00"), subtotal=Decimal("300.00"), tax=Decimal("57.00"))

    def taxed(payload: dict[str, Any]) -> None:
        data = data_of(payload)
        data.update(totalReturn=Decimal("119.00"), subtotal=Decimal("100.00"), tax=Decimal("19.00"))
        data["original"].update(total=Decimal("357.00"), subtotal=Decimal("300.00"), tax=Decimal("57.00"))

    event = parse_one(edited("return_created.json", taxed))
    assert (event.amount, event.tax) == (Decimal("119.00"), Decimal("19.00"))
    assert (event.sale_amount, event.sale_tax) == (Decimal("357.00"), Decimal("57.00"))
    assert event.full_refund is False
    h = LedgerHarness(tmp_path / "l.db", customer_key=["metadata.user_id", "external_id", "email"])
    try:
        h.apply(parse_one(edited("order_completed.json", taxed_order)))
        assert h.live_amount() == Decimal("300.00")
        h.apply(event)
        assert h.live_amount() == Decimal("200.00")
    finally:
        h.close()


def test_return_without_original_details_leaves_full_refund_unknown() -> None:
    body = edited("return_created.json", lambda p: data_of(p).update(original="FWdPzftgReSxl2CswuQQ4w"))
    event = parse_one(body)
    assert event.transaction_key == ORDER
    assert event.sale_amount is None
    assert event.full_refund is None


def test_return_in_another_currency_than_the_order_has_no_sale_amount() -> None:
    body = edited("return_created.json", lambda p: data_of(p)["original"].update(currency="EUR"))
    event = parse_one(body)
    assert event.sale_amount is None
    assert event.full_refund is None


def test_chargeback_opens_a_dispute_on_the_order() -> None:
    # developer.fastspring.com/reference/order-chargeback data, in a built event envelope
    event = parse_one(fixture("chargeback_created.json"))
    assert event.kind is EventKind.DISPUTE
    assert event.transaction_key == "fastspring:order:F_sVWUGMSGKu3ATP3xe2Xg"
    assert event.dispute_state is DisputeState.OPENED
    assert event.amount == Decimal("171.68")
    assert event.currency == "BRL"
    assert event.reason == "FRAUDULENT"
    assert event.test_mode is False


def test_no_dispute_outcome_is_reported() -> None:
    assert FastSpringAdapter.reports_dispute_outcome is False


def test_chargeback_of_a_test_order() -> None:
    event = parse_one(edited("chargeback_created.json", lambda p: p["events"][0].update(live=False)))
    assert event.test_mode is True


# --- batches and ignored events ------------------------------------------------------------------


def test_batch_yields_every_event_in_order() -> None:
    # built from two archrebel events: a sale and a subscription.deactivated in one POST
    events = parse(fixture("batch.json"))
    assert [e.kind for e in events] == [EventKind.SALE, EventKind.IGNORED]
    assert events[0].transaction_key == "fastspring:order:EBRltgSoSOu5sOHc-xn-wQ"
    assert events[1].event_type == "subscription.deactivated"


def test_batch_of_sale_and_its_return() -> None:
    sale = json.loads(fixture("order_completed.json"), parse_float=Decimal)["events"][0]
    refund = json.loads(fixture("return_created.json"), parse_float=Decimal)["events"][0]
    events = parse(dump({"events": [sale, refund]}))
    assert [e.kind for e in events] == [EventKind.SALE, EventKind.REFUND]
    assert {e.transaction_key for e in events} == {ORDER}


def test_empty_batch_has_no_events() -> None:
    assert parse(b'{"events": []}') == []


def test_one_unreadable_event_fails_the_whole_post() -> None:
    # the POST was stored as one unit; it is kept for replay rather than half-processed
    sale = json.loads(fixture("order_completed.json"), parse_float=Decimal)["events"][0]
    broken = {"id": "x", "type": "return.created", "data": {"currency": "USD", "totalReturn": 1}}
    with pytest.raises(PayloadError, match=r"events\[1\] return.created: missing data.original"):
        parse(dump({"events": [sale, broken]}))


@pytest.mark.parametrize(
    ("name", "reason"),
    [("subscription_deactivated.json", "no money moved")],
)
def test_subscription_events_are_ignored(name: str, reason: str) -> None:
    # archrebel event-yearly-subscription-deactivate.json, faithful
    event = parse_one(fixture(name))
    assert event.kind is EventKind.IGNORED
    assert event.reason == reason


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("subscription.activated", "order.completed"),
        ("subscription.canceled", "no money moved"),
        ("order.failed", "did not complete"),
        ("payoutEntry.created", "payout"),
        ("mailingListEntry.updated", "not used"),
    ],
)
def test_other_events_are_ignored_with_a_reason(event_type: str, reason: str) -> None:
    # an ignored event needs no data at all
    event = parse_one(json.dumps({"events": [{"id": "e1", "type": event_type}]}).encode())
    assert event.kind is EventKind.IGNORED
    assert event.event_type == event_type
    assert event.reason is not None and reason in event.reason


# --- junk ----------------------------------------------------------------------------------------


def _drop(*path: str) -> Any:
    def edit(payload: dict[str, Any]) -> None:
        target = data_of(payload)
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return edit


def _set(value: Any, *path: str) -> Any:
    def edit(payload: dict[str, Any]) -> None:
        target = data_of(payload)
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
        b"{}",
        b'{"events": {}}',
        b'{"events": [1]}',
        b'{"events": [{"id": "x"}]}',
        b'{"events": [{"type": 5}]}',
        b'{"events": [{"type": "order.completed"}]}',
        b'{"events": [{"type": "order.completed", "data": []}]}',
        b'{"events": [{"type": "order.completed", "data": {"total": NaN}}]}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_unreadable_bodies_raise_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse(body)


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("order_completed.json", lambda p: data_of(p).update(order=None, id=None)),
        ("order_completed.json", _drop("currency")),
        ("order_completed.json", _set("ZZZ", "currency")),
        ("order_completed.json", _set("300.00", "total")),
        ("order_completed.json", _set(True, "total")),
        ("order_completed.json", _set(-300, "total")),
        ("order_completed.json", _drop("total")),
        ("subscription_charge_completed.json", _drop("order")),
        ("subscription_charge_completed.json", _set({"items": []}, "order")),
        ("subscription_charge_completed.json", _set("lots", "total")),
        ("return_created.json", _drop("original")),
        ("return_created.json", _set({"reference": "SOF170918-7652-19314"}, "original")),
        ("return_created.json", _drop("totalReturn")),
        ("return_created.json", _set(5, "currency")),
        ("chargeback_created.json", lambda p: data_of(p).update(order=None, id=None)),
        ("chargeback_created.json", _set("171,68", "chargebackAmount")),
    ],
)
def test_events_acted_on_with_bad_fields_raise_payload_error(name: str, edit: Any) -> None:
    with pytest.raises(PayloadError):
        parse(edited(name, edit))


def test_chargeback_id_stands_in_for_a_missing_order() -> None:
    # the documented `id` of a chargeback equals its order id
    event = parse_one(edited("chargeback_created.json", _drop("order")))
    assert event.transaction_key == "fastspring:order:F_sVWUGMSGKu3ATP3xe2Xg"


@pytest.mark.parametrize("amount", [b"1e999999999", b"1E+400", b"-0.5", b"1e15", b'"300.0"'])
def test_huge_or_odd_numbers_raise_payload_error(amount: bytes) -> None:
    body = fixture("order_completed.json").replace(b'"total": 300.0', b'"total": ' + amount)
    assert body != fixture("order_completed.json")
    with pytest.raises(PayloadError):
        parse(body)


def test_amounts_never_pass_through_float() -> None:
    # as a float 2.675 is 2.67499999…, which would round to 2.67; read as the Decimal it is, it
    # rounds half-even to 2.68
    body = fixture("order_completed.json").replace(b'"total": 300.0', b'"total": 2.675')
    assert parse_one(body).amount == Decimal("2.68")
    body = fixture("order_completed.json").replace(b'"total": 300.0', b'"total": 19.99')
    assert parse_one(body).amount == Decimal("19.99")


# --- delivery id, registry, options --------------------------------------------------------------


def test_delivery_id_hashes_the_sorted_event_ids() -> None:
    expected = "events:" + hashlib.sha256(b"J5MhLkZdQmGgPOI2Fb1Xhw").hexdigest()
    assert adapter().delivery_id(request(fixture("order_completed.json"))) == expected


def test_delivery_id_ignores_event_order_and_formatting() -> None:
    events = json.loads(fixture("batch.json"))["events"]
    forward = json.dumps({"events": events}).encode()
    backward = json.dumps({"events": events[::-1]}, indent=4).encode()
    ids = sorted(e["id"] for e in events)
    expected = "events:" + hashlib.sha256("\n".join(ids).encode()).hexdigest()
    assert adapter().delivery_id(request(fixture("batch.json"))) == expected
    assert adapter().delivery_id(request(forward)) == expected
    assert adapter().delivery_id(request(backward)) == expected


def test_delivery_id_differs_when_the_batch_differs() -> None:
    one = adapter().delivery_id(request(fixture("order_completed_test.json")))
    both = adapter().delivery_id(request(fixture("batch.json")))
    assert one != both


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"events": []}',
        b'{"events": "x"}',
        b'{"events": [{"type": "order.completed"}]}',
        b'{"events": [{"id": "a"}, {"id": 7}]}',
        b'{"events": [{"id": " "}]}',
        b"[" * 100_000,
    ],
)
def test_delivery_id_falls_back_to_the_body_hash(body: bytes) -> None:
    assert adapter().delivery_id(request(body)) == body_hash(body)


def test_registry_finds_the_adapter() -> None:
    assert get_adapter_class("fastspring") is FastSpringAdapter


def test_options_forbid_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        FastSpringAdapter.Options.model_validate({"signature": "optional"})
