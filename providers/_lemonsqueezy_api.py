"""Lemon Squeezy's API as the safety net behind its webhooks: orders and subscription invoices.

Also `GET /v1/subscriptions/:id` (https://docs.lemonsqueezy.com/api/subscriptions/retrieve-subscription)
for `subscription_order_id`: the order a subscription began with (`attributes.order_id`), whose key the
first payment is booked under, when a refund of that payment arrives as a subscription invoice.

Also `GET /v1/affiliates` (the store's own affiliate program, which ends with Lemon Squeezy) for
`import-affiliates`: https://docs.lemonsqueezy.com/api/affiliates/the-affiliate-object (status `active`,
`pending` or `disabled`; `user_name`, `user_email`).

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

An order names no discount code; its discount redemption does (`attributes.discount_code`), listed by
`GET /v1/discount-redemptions?filter[order_id]=` and read while the webhook of a discounted order is
recorded: https://docs.lemonsqueezy.com/api/discount-redemptions/list-all-discount-redemptions ,
https://docs.lemonsqueezy.com/api/discount-redemptions/the-discount-redemption-object .
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.events import ignored
from providers import _api
from providers.base import AdapterOptions, ProviderAdapter, ProviderUnavailable

DEFAULT_BASE_URL = "https://api.lemonsqueezy.com/v1"
PAGE_SIZE = 100
_PAID = {"paid", "refunded", "partial_refund"}

# list path, what it lists, the webhook announcing a payment, the webhook announcing its refund
_LISTS = (
    ("orders", "order", "order_created", "order_refunded"),
    ("subscription-invoices", "subscription invoice", "subscription_payment_success", "subscription_payment_refunded"),
)


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "accept": "application/vnd.api+json"}


def _attributes(item: Mapping[str, Any]) -> Mapping[str, Any]:
    found = item.get("attributes")
    return found if isinstance(found, Mapping) else {}


def _shape(store_id: int | None) -> _api.ListShape:
    def params(page: int, previous: Any) -> dict[str, str | int]:
        query: dict[str, str | int] = {"page[number]": page, "page[size]": PAGE_SIZE}
        if store_id is not None:
            query["filter[store_id]"] = store_id
        return query

    def more(answer: Any, page: int, count: int) -> bool:
        last = ((answer.get("meta") or {}).get("page") or {}).get("lastPage") or page
        return page < int(last)

    return _api.ListShape(
        params=params,
        items=lambda answer: list(answer.get("data") or []),
        more=more,
        created_at=lambda item: _api.parse_time(_attributes(item).get("created_at")),
    )


async def subscription_order_id(lookup: _api.WebhookLookup, subscription_id: str) -> str | None:
    """The id of the order subscription `subscription_id` began with; None when the API does not know it.

    Trouble reaching the API raises `ProviderUnavailable` (the webhook is read again later).
    """
    answer = await lookup.fetch(f"subscriptions/{subscription_id}")
    if isinstance(answer, int):
        return None
    data = answer.get("data")
    if not isinstance(data, Mapping) or data.get("type") != "subscriptions" or str(data.get("id")) != subscription_id:
        return None
    order_id = _attributes(data).get("order_id")
    if isinstance(order_id, bool) or not isinstance(order_id, int | str) or not str(order_id).isdigit():
        return None
    return str(order_id)


async def list_payments(
    adapter: ProviderAdapter, options: _api.ApiOptions, window: _api.HistoryWindow
) -> list[_api.PaymentRecord]:
    headers = _auth(_api.api_key("lemonsqueezy", options))
    shape = _shape(getattr(options, "store_id", None))
    records: list[_api.PaymentRecord] = []
    async with _api.ApiClient("Lemon Squeezy", options, DEFAULT_BASE_URL, headers, window) as client:
        for path, label, paid, refunded in _LISTS:
            for item in await _api.list_window(client, path, shape):
                records.append(_record(adapter, item, label, (paid, refunded)))
    return records


def _record(
    adapter: ProviderAdapter, item: Mapping[str, Any], label: str, webhooks: tuple[str, str]
) -> _api.PaymentRecord:
    attributes = _attributes(item)
    status = attributes.get("status")
    paid, refunded = webhooks
    meta = {"test_mode": attributes.get("test_mode") is True}
    if status not in _PAID:
        events = [ignored(paid, f"{label} status is {status}, not paid")]
    else:
        events = _api.webhook_events(adapter, {"meta": {**meta, "event_name": paid}, "data": item})
        if status != "paid" or (attributes.get("refunded_amount") or 0) > 0:
            events += _api.webhook_events(adapter, {"meta": {**meta, "event_name": refunded}, "data": item})
    source = f"{item.get('type')}/{item.get('id')}"
    return _api.PaymentRecord(source, _api.parse_time(attributes.get("created_at")), item, events)


async def list_affiliates(
    adapter: ProviderAdapter, options: _api.ApiOptions, window: _api.HistoryWindow
) -> list[_api.Affiliate]:
    headers = _auth(_api.api_key("lemonsqueezy", options))
    async with _api.ApiClient("Lemon Squeezy", options, DEFAULT_BASE_URL, headers, window) as client:
        items = await _api.list_window(client, "affiliates", _shape(getattr(options, "store_id", None)))
    affiliates = []
    for item in items:
        attributes = _attributes(item)
        name, _, surname = str(attributes.get("user_name") or "").strip().partition(" ")
        email = attributes.get("user_email")
        status = attributes.get("status")
        affiliates.append(
            _api.Affiliate(
                source=f"affiliates/{item.get('id')}",
                email=email if isinstance(email, str) and "@" in email else None,
                name=name or None,
                surname=surname.strip() or None,
                active=status == "active",
                status=status if isinstance(status, str) else None,
            )
        )
    return affiliates


def webhook_lookup(options: AdapterOptions, key: str) -> _api.WebhookLookup:
    return _api.WebhookLookup("Lemon Squeezy", options, DEFAULT_BASE_URL, _auth(key))


async def redeemed_code(lookup: _api.WebhookLookup, order_id: str) -> str | None:
    """The code redeemed on order `order_id`; None when Lemon Squeezy lists no redemption for it."""
    answer = await lookup.get("discount-redemptions", {"filter[order_id]": order_id})
    items = answer.get("data") if isinstance(answer, Mapping) else None
    if answer is not None and not isinstance(items, list):
        raise ProviderUnavailable("Lemon Squeezy API answered a redemption list without data")
    for item in items or []:
        code = _attributes(item).get("discount_code") if isinstance(item, Mapping) else None
        if isinstance(code, str) and code.strip():
            return code.strip()
    return None
