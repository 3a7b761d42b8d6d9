"""Lemon Squeezy's API as the safety net behind its webhooks: orders and subscription invoices.

`GET /v1/orders` and `GET /v1/subscription-invoices` (JSON:API, newest first, `page[size]` up to 100,
`filter[store_id]`) describe each payment as the webhooks do, so each object is read by the adapter's
own parser as the webhook that announces it would be (`order_created`, `subscription_payment_success`)
and, when money went back, as its refund event (`order_refunded`, `subscription_payment_refunded`,
cumulative `refunded_amount`). The API has no checkout custom data (`meta.custom_data` exists only in
webhooks), so `metadata.*` sources find nothing here: the memory (`known:email`, `known:customer_id`)
and `email` are what map a payment the webhooks never delivered.
https://docs.lemonsqueezy.com/api/orders/list-all-orders ,
https://docs.lemonsqueezy.com/api/subscription-invoices/list-all-subscription-invoices ; rate limit
300 requests per minute (https://docs.lemonsqueezy.com/api/getting-started/requests#rate-limiting).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bridge.events import ignored
from providers._api import ApiClient, ApiOptions, HistoryWindow, PaymentRecord, api_key, parse_time
from providers.base import ProviderAdapter, WebhookRequest

DEFAULT_BASE_URL = "https://api.lemonsqueezy.com/v1"
PAGE_SIZE = 100
_PAID = {"paid", "refunded", "partial_refund"}

# list path, what it lists, the webhook announcing a payment, the webhook announcing its refund
_LISTS = (
    ("orders", "order", "order_created", "order_refunded"),
    ("subscription-invoices", "subscription invoice", "subscription_payment_success", "subscription_payment_refunded"),
)


async def list_payments(adapter: ProviderAdapter, options: ApiOptions, window: HistoryWindow) -> list[PaymentRecord]:
    key = api_key("lemonsqueezy", options)
    headers = {"authorization": f"Bearer {key}", "accept": "application/vnd.api+json"}
    store_id = getattr(options, "store_id", None)
    records: list[PaymentRecord] = []
    async with ApiClient("Lemon Squeezy", options, DEFAULT_BASE_URL, headers, window) as client:
        for path, label, paid_event, refund_event in _LISTS:
            page = 1
            while True:
                params: dict[str, str | int] = {"page[number]": page, "page[size]": PAGE_SIZE}
                if store_id is not None:
                    params["filter[store_id]"] = store_id
                answer = await client.get(path, params)
                items = [item for item in answer.get("data") or [] if isinstance(item, Mapping)]
                if window.on_page is not None:
                    window.on_page(len(items))
                older = False
                for item in items:
                    found = item.get("attributes")
                    attributes: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
                    created = parse_time(attributes.get("created_at"))
                    if created is not None and created < window.since:
                        older = True  # newest first: everything after this is older still
                        continue
                    if window.contains(created):
                        records.append(_record(adapter, item, attributes, label, (paid_event, refund_event)))
                last_page = ((answer.get("meta") or {}).get("page") or {}).get("lastPage") or page
                if older or not items or page >= int(last_page):
                    break
                page += 1
    return records


def _record(
    adapter: ProviderAdapter,
    item: Mapping[str, Any],
    attributes: Mapping[str, Any],
    label: str,
    webhooks: tuple[str, str],
) -> PaymentRecord:
    source = f"{item.get('type')}/{item.get('id')}"
    status = attributes.get("status")
    paid, refunded = webhooks
    if status not in _PAID:
        events = [ignored(paid, f"{label} status is {status}, not paid")]
    else:
        events = _as_webhook(adapter, paid, item, attributes)
        if status != "paid" or (attributes.get("refunded_amount") or 0) > 0:
            events += _as_webhook(adapter, refunded, item, attributes)
    return PaymentRecord(source, parse_time(attributes.get("created_at")), item, events)


def _as_webhook(
    adapter: ProviderAdapter, event: str, item: Mapping[str, Any], attributes: Mapping[str, Any]
) -> list[Any]:
    # the webhook that announces this object, read by the adapter's own rules (same keys, same amounts)
    meta = {"event_name": event, "test_mode": attributes.get("test_mode") is True}
    body = json.dumps({"meta": meta, "data": item}, default=str).encode()
    return adapter.parse(WebhookRequest("GET", "/api", {}, body))
