"""Dodo Payments' API as the safety net behind its webhooks: `GET /payments` and `GET /refunds`.

A payment (`payment_id`) is the key every sale, refund and dispute of it shares. Each listed payment
is read by the adapter's own parser as the `payment.succeeded` that announces it (other statuses are
no sale), each listed refund as its `refund.succeeded`. Both lists filter on `created_at_gte` /
`created_at_lte`; pages: `page_number` from 0, `page_size` up to 100, envelope `{"items"}` (a short
page is the last). Test and live are separate hosts (`test.dodopayments.com`, `live.dodopayments.com`).
https://docs.dodopayments.com/api-reference/payments/get-payments ,
https://docs.dodopayments.com/api-reference/refunds/get-refunds .

A payment names the discount the buyer redeemed only by `discount_id`; the code (the `coupon` partner
source) is `code` of `GET /discounts/{discount_id}`, read while the webhook is recorded:
https://docs.dodopayments.com/api-reference/discounts/get-discounts-1 .
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bridge.events import ignored
from providers import _api
from providers.base import AdapterOptions, ProviderAdapter

DEFAULT_BASE_URL = "https://live.dodopayments.com"
PAGE_SIZE = 100


async def list_payments(
    adapter: ProviderAdapter, options: _api.ApiOptions, window: _api.HistoryWindow
) -> list[_api.PaymentRecord]:
    dates = {"created_at_gte": _api.iso_z(window.since), "created_at_lte": _api.iso_z(window.until)}
    shape = _api.ListShape(
        params=lambda page, previous: {**dates, "page_number": page, "page_size": PAGE_SIZE},
        items=lambda answer: list(answer.get("items") or []),
        more=lambda answer, page, count: count >= PAGE_SIZE,
        created_at=lambda item: _api.parse_time(item.get("created_at")),
        first_page=0,
    )
    headers = {"authorization": f"Bearer {_api.api_key('dodopayments', options)}"}
    async with _api.ApiClient("Dodo Payments", options, DEFAULT_BASE_URL, headers, window) as client:
        payments = await _api.list_window(client, "payments", shape)
        refunds = await _api.list_window(client, "refunds", shape)
    records = [_record(adapter, "payment", p, "payment_id", "payment.succeeded") for p in payments]
    records += [_record(adapter, "refund", r, "refund_id", "refund.succeeded") for r in refunds]
    return records


def _record(
    adapter: ProviderAdapter, kind: str, item: Mapping[str, Any], id_field: str, event: str
) -> _api.PaymentRecord:
    created = item.get("created_at")
    status = item.get("status")
    if status == "succeeded":
        events = _api.webhook_events(adapter, {"type": event, "timestamp": created, "data": item})
    else:
        events = [ignored(event, f"{kind} status is {status}, not succeeded")]
    return _api.PaymentRecord(f"{kind}/{item.get(id_field)}", _api.parse_time(created), item, events)


def webhook_lookup(options: AdapterOptions, key: str) -> _api.WebhookLookup:
    return _api.WebhookLookup("Dodo Payments", options, DEFAULT_BASE_URL, {"authorization": f"Bearer {key}"})


async def discount_code(lookup: _api.WebhookLookup, discount_id: str) -> str | None:
    """The code of discount `discount_id`; None when Dodo no longer has it (deleted) or it has no code."""
    return _api.code_of(await lookup.get(f"discounts/{quote(discount_id, safe='')}"), "Dodo Payments")
