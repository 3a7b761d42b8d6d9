"""Mollie's API as the safety net behind its webhooks: `GET /v2/payments`.

The adapter already reads every webhook by fetching the payment and reporting its whole state
(`payment_events`: the sale, the cumulative refunds, a chargeback), so the list is read the same way:
each payment object as a ping for it would be read. Pages are cursors: `limit` up to 250, newest
first, `_links.next.href` carries the `from` of the next page (`_links.next` is null on the last).
The endpoint's existing `api_key` (payments.read) is all it needs.
https://docs.mollie.com/reference/list-payments , https://docs.mollie.com/reference/pagination .
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bridge.events import NormalizedEvent, ignored
from providers import _api
from providers.base import AdapterOptions, ProviderAdapter
from providers.mollie import DEFAULT_API_BASE_URL, payment_events

PAGE_SIZE = 250


def _params(page: int, previous: Any) -> dict[str, str | int]:
    query: dict[str, str | int] = {"limit": PAGE_SIZE}
    following = ((previous or {}).get("_links") or {}).get("next") or {}
    cursor = parse_qs(urlsplit(str(following.get("href", ""))).query).get("from")
    if cursor:
        query["from"] = cursor[0]
    return query


_SHAPE = _api.ListShape(
    params=_params,
    items=lambda answer: list((answer.get("_embedded") or {}).get("payments") or []),
    more=lambda answer, page, count: bool((answer.get("_links") or {}).get("next")),
    created_at=lambda item: _api.parse_time(item.get("createdAt")),
)


async def list_payments(
    adapter: ProviderAdapter, options: AdapterOptions, window: _api.HistoryWindow
) -> list[_api.PaymentRecord]:
    headers = {"authorization": f"Bearer {_api.api_key('mollie', options)}"}
    async with _api.ApiClient("Mollie", options, DEFAULT_API_BASE_URL, headers, window) as client:
        payments = await _api.list_window(client, "payments", _SHAPE)
    return [_record(payment) for payment in payments]


def _record(payment: Mapping[str, Any]) -> _api.PaymentRecord:
    events: list[NormalizedEvent]
    try:
        events = payment_events(payment) or [ignored("payment", f"payment status is {payment.get('status')}")]
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        events = [ignored("payment", f"unreadable Mollie payment: {exc}")]
    return _api.PaymentRecord(
        f"payment/{payment.get('id')}", _api.parse_time(payment.get("createdAt")), payment, events
    )
