"""Polar's API as the safety net behind its webhooks: `GET /v1/orders/`.

An order is one payment (a purchase, a subscription's first charge, each renewal), the same `Order`
object `order.paid` and `order.refunded` carry, so each is read by the adapter's own parser as those
webhooks; a refunded or partially refunded order also yields its refund (cumulative
`refunded_amount`). Pages: `page` from 1, `limit` up to 100, `sorting=-created_at`, envelope
`{"items", "pagination": {"total_count", "max_page"}}`; an organization access token sees one
organization, a personal one needs `organization_id`.
https://polar.sh/docs/api-reference/orders/list ; rate limit 300 requests per minute per organization
(https://polar.sh/docs/api-reference/introduction#rate-limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.events import ignored
from providers import _api
from providers.base import ProviderAdapter

DEFAULT_BASE_URL = "https://api.polar.sh/v1"
PAGE_SIZE = 100


async def list_payments(
    adapter: ProviderAdapter, options: _api.ApiOptions, window: _api.HistoryWindow
) -> list[_api.PaymentRecord]:
    organization = getattr(options, "organization_id", None)

    def params(page: int, previous: Any) -> dict[str, str | int]:
        query: dict[str, str | int] = {"page": page, "limit": PAGE_SIZE, "sorting": "-created_at"}
        if organization:
            query["organization_id"] = organization
        return query

    shape = _api.ListShape(
        params=params,
        items=lambda answer: list(answer.get("items") or []),
        more=lambda answer, page, count: page < int((answer.get("pagination") or {}).get("max_page") or page),
        created_at=lambda item: _api.parse_time(item.get("created_at")),
    )
    headers = {"authorization": f"Bearer {_api.api_key('polar', options)}"}
    async with _api.ApiClient("Polar", options, DEFAULT_BASE_URL, headers, window) as client:
        orders = await _api.list_window(client, "orders/", shape)
    return [_record(adapter, order) for order in orders]


def _record(adapter: ProviderAdapter, order: Mapping[str, Any]) -> _api.PaymentRecord:
    status = order.get("status")
    created = order.get("created_at")
    if status not in ("paid", "refunded", "partially_refunded"):
        events = [ignored("order.paid", f"order status is {status}, not paid")]
    else:
        events = _api.webhook_events(adapter, {"type": "order.paid", "timestamp": created, "data": order})
        if status != "paid":
            events += _api.webhook_events(adapter, {"type": "order.refunded", "timestamp": created, "data": order})
    return _api.PaymentRecord(f"order/{order.get('id')}", _api.parse_time(created), order, events)
