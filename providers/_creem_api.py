"""Creem's API: `GET /v1/transactions/search` behind its webhooks, `GET /v1/transactions` for a renewal.

`paid_transaction` reads one transaction (`GET /v1/transactions?transaction_id=`,
https://docs.creem.io/api-reference/endpoint/get-transaction) for a `subscription.paid` whose payload
names the transaction but not what was paid; the adapter then books the transaction's own `amount_paid`.

A transaction (`tran_…`) is one payment — the key `checkout.completed` and `subscription.paid` both
resolve to — so each is read by the adapter's own parser as the `checkout.completed` that carries it
(its `order` holding the transaction id and the transaction's amounts), and a refunded one also as a
`refund.created` naming it (cumulative `refunded_amount`). A transaction names its customer only by id;
the customer's email comes from `GET /v1/customers?customer_id=` (once per customer, within the run's
budget), for the `email` and `known:email` sources. Auth: `x-api-key`. Pages: `page_number` from 1,
`page_size`, envelope `{"items", "pagination": {"total_records", "total_pages", "current_page",
"next_page", "prev_page"}}`; the order of the items is not documented, so every page of the list is read.
https://docs.creem.io/api-reference/endpoint/get-transactions ,
https://docs.creem.io/api-reference/endpoint/get-customer .

An order names the discount the buyer redeemed by its id (`order.discount`); the code (the `coupon`
partner source) is `code` of `GET /v1/discounts?discount_id=`, read while the webhook is recorded:
https://docs.creem.io/api-reference/endpoint/get-discount-code .
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.events import ignored
from providers import _api
from providers.base import AdapterOptions, ProviderAdapter

DEFAULT_BASE_URL = "https://api.creem.io/v1"
PAGE_SIZE = 100
_PAID = {"paid", "refunded", "partially_refunded"}
_MONEY = ("amount", "amount_paid", "discount_amount", "tax_amount", "currency")


async def paid_transaction(lookup: _api.WebhookLookup, transaction_id: str) -> Mapping[str, Any] | None:
    """The transaction if Creem reports it paid (refunded later or not), else None (unknown, not paid).

    Trouble reaching Creem, a 429 or 5xx, or a refused key raises `ProviderUnavailable`: the webhook stays
    stored and is read again later, so fixing the key lets it through.
    """
    transaction = await lookup.fetch("transactions", {"transaction_id": transaction_id})
    if isinstance(transaction, int):
        # 404 (or 400) for an id Creem does not know: the renewal stays skipped with its reason
        return None
    return transaction if transaction.get("status") in _PAID else None


async def list_payments(
    adapter: ProviderAdapter, options: _api.ApiOptions, window: _api.HistoryWindow
) -> list[_api.PaymentRecord]:
    shape = _api.ListShape(
        params=lambda page, previous: {"page_number": page, "page_size": PAGE_SIZE},
        items=lambda answer: list(answer.get("items") or []),
        more=lambda answer, page, count: (answer.get("pagination") or {}).get("next_page") is not None,
        created_at=lambda item: _api.parse_time(item.get("created_at")),
        newest_first=False,
    )
    records = []
    async with _api.ApiClient(
        "Creem", options, DEFAULT_BASE_URL, {"x-api-key": _api.api_key("creem", options)}, window
    ) as client:
        customers: dict[str, Mapping[str, Any]] = {}
        for transaction in await _api.list_window(client, "transactions/search", shape):
            customer_id = transaction.get("customer")
            if isinstance(customer_id, str) and customer_id and customer_id not in customers:
                customers[customer_id] = await _customer(client, customer_id)
            customer = customers.get(customer_id) if isinstance(customer_id, str) else None
            records.append(_record(adapter, transaction, customer or {"id": customer_id}))
    return records


async def _customer(client: _api.ApiClient, customer_id: str) -> Mapping[str, Any]:
    try:
        found = await client.get("customers", {"customer_id": customer_id})
    except _api.ApiError:
        # a deleted customer: the payment still maps through known:customer_id
        return {"id": customer_id}
    return found if isinstance(found, Mapping) else {"id": customer_id}


def _record(
    adapter: ProviderAdapter, transaction: Mapping[str, Any], customer: Mapping[str, Any]
) -> _api.PaymentRecord:
    status = transaction.get("status")
    created = transaction.get("created_at")
    source = f"transaction/{transaction.get('id')}"
    if status not in _PAID:
        return _api.PaymentRecord(
            source, _api.parse_time(created), transaction, [ignored("transaction", f"status {status}")]
        )
    order = {key: transaction.get(key) for key in _MONEY if transaction.get(key) is not None}
    order.update(
        id=transaction.get("order"),
        transaction=transaction.get("id"),
        type="recurring" if transaction.get("subscription") else "onetime",
        mode=transaction.get("mode"),
    )
    completed = {"order": order, "customer": customer, "mode": transaction.get("mode")}
    events = _api.webhook_events(
        adapter, {"eventType": "checkout.completed", "created_at": created, "object": completed}
    )
    if status != "paid" or (transaction.get("refunded_amount") or 0) > 0:
        refund = {
            "refund_amount": transaction.get("refunded_amount"),
            "refund_currency": transaction.get("currency"),
            "transaction": transaction,
            "customer": customer,
            "mode": transaction.get("mode"),
        }
        events += _api.webhook_events(adapter, {"eventType": "refund.created", "created_at": created, "object": refund})
    return _api.PaymentRecord(source, _api.parse_time(created), transaction, events)


def webhook_lookup(options: AdapterOptions, key: str) -> _api.WebhookLookup:
    return _api.WebhookLookup("Creem", options, DEFAULT_BASE_URL, {"x-api-key": key})


async def discount_code(lookup: _api.WebhookLookup, discount_id: str) -> str | None:
    """The code of discount `discount_id`; None when Creem no longer has it (deleted) or it has no code."""
    return _api.code_of(await lookup.get("discounts", {"discount_id": discount_id}), "Creem")
