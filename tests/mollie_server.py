"""A Mollie-API-shaped HTTP server on loopback for tests: payments, their refunds, customers, faults.

It serves what the Mollie adapter reads — `GET /v2/payments/{id}` (with `embed=refunds`),
`GET /v2/payments/{id}/refunds` and `GET /v2/customers/{id}` — from the payment objects in
tests/fixtures/mollie, behind bearer auth, with Mollie's error shape (`{"status", "title", "detail",
"_links"}`). Tests change a payment between webhooks, as Mollie does before it pings: `set_payment(...)`,
`set_refunds(...)`, or `before_webhook(<fixture>)` which the shared end-to-end suite calls before it
sends a fixture (see WEBHOOK_STATES). Faults: `fail_next` (any status, e.g. 503 or 429) and `hang_next`
(answers late, so the client times out).

Refunds (https://docs.mollie.com/reference/get-refund, /payments/refunds): a payment given refunds
with `set_refunds` reports `amountRefunded` and `amountRemaining` computed from them, as decimal
strings with the currency's own number of decimals (JPY `"500"`, EUR `"5.95"`:
https://docs.mollie.com/payments/multicurrency), and embeds them only when asked (`embed=refunds`).
`amountRefunded` counts every refund that still takes money back — `queued`, `pending`, `processing`,
`refunded` — and not a `canceled` or `failed` one, whose money Mollie returns to the balance. A payment
without refunds given here is served exactly as stored (the older fixtures carry the totals themselves).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.money import currency_exponent
from tests.loopback import LoopbackServer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mollie"
API_KEY = "live_bridgeTestKeyNotARealMollieKey"
DOCS = {"documentation": {"href": "https://docs.mollie.com/guides/handling-errors", "type": "text/html"}}


@dataclass(frozen=True)
class Refund:
    """One refund of a payment as the Refunds API reports it: its id, amount value and status."""

    id: str
    value: str
    status: str


@dataclass(frozen=True)
class WebhookState:
    """A payment fixture, and the refunds Mollie holds for it at that moment (none: served as stored)."""

    payment: str
    refunds: tuple[Refund, ...] = ()


# refund statuses whose money is not (or no longer) on its way back to the customer
NOT_REFUNDING = frozenset({"canceled", "failed"})

# The payment state each webhook fixture announces: Mollie changes the payment, then pings. The JPY
# pings all name one payment; a refund pings only once it is `processing`, `failed` or `refunded`
# (https://docs.mollie.com/payments/refunds), the other states are seen by the next ping.
WEBHOOK_STATES = {
    "ping_sale.txt": WebhookState("payment_paid.json"),
    "ping_refund.txt": WebhookState("payment_refunded.json"),
    "ping_refund_partial.txt": WebhookState("payment_partially_refunded.json"),
    "ping_test_mode.txt": WebhookState("payment_recurring_test.json"),
    "event_payment_paid.json": WebhookState("payment_paid.json"),
    "event_refund_refunded.json": WebhookState("payment_partially_refunded.json"),
    "ping_jpy_sale.txt": WebhookState("payment_jpy_paid.json"),
    "ping_jpy_refund_partial.txt": WebhookState("payment_jpy_paid.json", (Refund("re_4qqhO89gsT", "500", "refunded"),)),
    "ping_jpy_refund_rest.txt": WebhookState(
        "payment_jpy_paid.json",
        (Refund("re_4qqhO89gsT", "500", "refunded"), Refund("re_jpyRestOfIt1", "1000", "refunded")),
    ),
    "ping_jpy_refund_processing.txt": WebhookState(
        "payment_jpy_paid.json",
        (Refund("re_4qqhO89gsT", "500", "processing"), Refund("re_jpyCanceled1", "300", "pending")),
    ),
    "ping_jpy_refund_failed.txt": WebhookState(
        "payment_jpy_paid.json",
        (Refund("re_4qqhO89gsT", "500", "failed"), Refund("re_jpyCanceled1", "300", "canceled")),
    ),
    "ping_jpy_refund_settled.txt": WebhookState(
        "payment_jpy_paid.json",
        (
            Refund("re_4qqhO89gsT", "500", "failed"),
            Refund("re_jpyCanceled1", "300", "canceled"),
            Refund("re_jpySettled01", "600", "refunded"),
        ),
    ),
}
INITIAL_PAYMENTS = ("payment_paid.json", "payment_recurring_test.json")
INITIAL_CUSTOMERS = ("customer.json",)


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    query: str
    authorized: bool
    status: int


@dataclass
class _Fault:
    remaining: int
    status: int
    seconds: float
    path: str | None


def fixture(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    assert isinstance(data, dict)
    return data


class MollieServer:
    """Mollie's /v2 API served by uvicorn in a background thread; `with MollieServer() as server: ...`."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._payments: dict[str, dict[str, Any]] = {}
        self._customers: dict[str, dict[str, Any]] = {}
        self._refunds: dict[str, tuple[Refund, ...]] = {}
        self._requests: list[ApiRequest] = []
        self._faults: list[_Fault] = []
        self.reset()
        routes = [
            Route("/v2/payments", self._list_payments, methods=["GET"]),
            Route("/v2/payments/{id}", self._get_payment, methods=["GET"]),
            Route("/v2/payments/{id}/refunds", self._list_refunds, methods=["GET"]),
            Route("/v2/customers/{id}", self._get_customer, methods=["GET"]),
        ]
        self._http = LoopbackServer(Starlette(routes=routes), "Mollie test server")

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL ending in /v2, what the adapter's `api_base_url` takes."""
        return f"http://127.0.0.1:{self._http.port}/v2"

    def start(self, timeout: float = 10.0) -> Self:
        self._http.start(timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._http.stop(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state and controls (test thread) ---------------------------------------------------------------

    def reset(self) -> None:
        """Back to the initial payments and customers, no faults, no recorded requests."""
        with self._lock:
            self._payments.clear()
            self._customers.clear()
            self._refunds.clear()
            self._requests.clear()
            self._faults.clear()
        for name in INITIAL_PAYMENTS:
            self.set_payment(fixture(name))
        for name in INITIAL_CUSTOMERS:
            self.set_customer(fixture(name))

    def set_payment(self, payment: Mapping[str, Any]) -> None:
        """Serve `payment` (a Mollie payment object) from now on, replacing any with the same id."""
        with self._lock:
            self._payments[str(payment["id"])] = json.loads(json.dumps(payment))

    def set_refunds(self, payment_id: str, refunds: Sequence[Refund]) -> None:
        """The refunds Mollie holds for a payment from now on (replacing any earlier ones)."""
        with self._lock:
            self._refunds[payment_id] = tuple(refunds)

    def set_customer(self, customer: Mapping[str, Any]) -> None:
        with self._lock:
            self._customers[str(customer["id"])] = json.loads(json.dumps(customer))

    def remove_payment(self, payment_id: str) -> None:
        with self._lock:
            self._payments.pop(payment_id, None)

    def before_webhook(self, fixture_name: str) -> None:
        """Move the payment to the state the webhook fixture announces (nothing for other fixtures)."""
        state = WEBHOOK_STATES.get(fixture_name)
        if state is not None:
            payment = fixture(state.payment)
            self.set_payment(payment)
            self.set_refunds(str(payment["id"]), state.refunds)

    def fail_next(self, n: int = 1, status: int = 503, *, path: str | None = None) -> None:
        """Answer the next n calls (whose path starts with `path`, if given) with `status`."""
        with self._lock:
            self._faults.append(_Fault(n, status, 0.0, path))

    def hang_next(self, n: int, seconds: float, *, path: str | None = None) -> None:
        """Wait `seconds` before answering the next n calls, so a client with a shorter timeout gives up."""
        with self._lock:
            self._faults.append(_Fault(n, 200, seconds, path))

    @property
    def requests(self) -> list[ApiRequest]:
        with self._lock:
            return list(self._requests)

    # -- HTTP (server thread) ---------------------------------------------------------------------------

    async def _get_payment(self, request: Request) -> Response:
        payment_id = request.path_params["id"]
        embeds = set(request.query_params.get("embed", "").split(","))
        with self._lock:
            payment = self._payment_now(payment_id, embed_refunds="refunds" in embeds)
        table = {payment_id: payment} if payment is not None else {}
        return await self._answer(request, table, payment_id, f"No payment exists with token {payment_id}.")

    async def _list_refunds(self, request: Request) -> Response:
        """`GET /v2/payments/{id}/refunds` (https://docs.mollie.com/reference/list-refunds): HAL `_embedded`."""
        payment_id = request.path_params["id"]
        with self._lock:
            payment = self._payments.get(payment_id)
            refunds = [] if payment is None else self._refund_objects(payment)
        listing = {
            "count": len(refunds),
            "_embedded": {"refunds": refunds},
            "_links": {"self": {"href": f"{self.url}/payments/{payment_id}/refunds", "type": "application/hal+json"}},
        }
        table = {payment_id: listing} if payment is not None else {}
        return await self._answer(request, table, payment_id, f"No payment exists with token {payment_id}.")

    def _payment_now(self, payment_id: str, *, embed_refunds: bool) -> dict[str, Any] | None:
        """The stored payment, with its refund totals (and refunds, if embedded) when refunds were given."""
        stored = self._payments.get(payment_id)
        if stored is None or not self._refunds.get(payment_id):
            return stored
        payment = json.loads(json.dumps(stored))
        amount = payment["amount"]
        currency = amount["currency"]
        total = Decimal(amount["value"])
        refunding = sum(
            (Decimal(r.value) for r in self._refunds[payment_id] if r.status not in NOT_REFUNDING), Decimal(0)
        )
        payment["amountRefunded"] = _amount(refunding, currency)
        payment["amountRemaining"] = _amount(max(total - refunding, Decimal(0)), currency)
        payment["_links"]["refunds"] = {
            "href": f"https://api.mollie.com/v2/payments/{payment_id}/refunds",
            "type": "application/hal+json",
        }
        if embed_refunds:
            payment["_embedded"] = {"refunds": self._refund_objects(payment)}
        return payment

    def _refund_objects(self, payment: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Each refund in the shape of the Get refund example, in the payment's currency."""
        payment_id = str(payment["id"])
        currency = payment["amount"]["currency"]
        base = "https://api.mollie.com/v2/payments"
        return [
            {
                "resource": "refund",
                "id": refund.id,
                "amount": _amount(Decimal(refund.value), currency),
                "status": refund.status,
                "createdAt": "2018-03-20T14:20:11+00:00",
                "description": str(payment.get("description", "")),
                "paymentId": payment_id,
                "_links": {
                    "self": {"href": f"{base}/{payment_id}/refunds/{refund.id}", "type": "application/hal+json"},
                    "payment": {"href": f"{base}/{payment_id}", "type": "application/hal+json"},
                },
            }
            for refund in self._refunds.get(payment_id, ())
        ]

    async def _list_payments(self, request: Request) -> Response:
        """`GET /v2/payments`: newest first, `limit` (up to 250) and the `from` cursor, HAL `_embedded`
        and `_links.next` (https://docs.mollie.com/reference/list-payments, /reference/pagination)."""
        try:
            limit = max(1, min(250, int(request.query_params.get("limit", "50"))))
        except ValueError:
            limit = 50
        with self._lock:
            newest_first = sorted(self._payments.values(), key=lambda p: str(p.get("createdAt")), reverse=True)
        cursor = request.query_params.get("from")
        ids = [p["id"] for p in newest_first]
        start = ids.index(cursor) if cursor in ids else 0
        page, rest = newest_first[start : start + limit], newest_first[start + limit :]
        base = f"{self.url}/payments"
        listing = {
            "count": len(page),
            "_embedded": {"payments": page},
            "_links": {
                "self": {"href": f"{base}?limit={limit}", "type": "application/hal+json"},
                "previous": None,
                "next": {"href": f"{base}?from={rest[0]['id']}&limit={limit}", "type": "application/hal+json"}
                if rest
                else None,
                **DOCS,
            },
        }
        return await self._answer(request, {"list": listing}, "list", "")

    async def _get_customer(self, request: Request) -> Response:
        customer_id = request.path_params["id"]
        detail = f"No customer exists with token {customer_id}."
        return await self._answer(request, self._customers, customer_id, detail)

    async def _answer(
        self, request: Request, table: Mapping[str, dict[str, Any]], key: str, not_found: str
    ) -> Response:
        authorized = request.headers.get("authorization") == f"Bearer {self.api_key}"
        with self._lock:
            fault = self._take_fault(request.url.path)
            found = table.get(key)
        if fault is not None and fault.seconds > 0:
            await self._http.sleep(fault.seconds)
        if not authorized:
            status, body = 401, _error(401, "Unauthorized Request", "Missing authentication, or failed to authenticate")
        elif fault is not None and fault.seconds == 0:
            status, body = fault.status, _error(fault.status, "Service Unavailable", "Injected fault")
        elif found is None:
            status, body = 404, _error(404, "Not Found", not_found)
        else:
            status, body = 200, found
        with self._lock:
            self._requests.append(ApiRequest(request.method, request.url.path, request.url.query, authorized, status))
        return Response(json.dumps(body), status, media_type="application/hal+json")

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and (fault.path is None or path.startswith(fault.path)):
                fault.remaining -= 1
                return fault
        return None


def _amount(value: Decimal, currency: str) -> dict[str, str]:
    """Mollie's amount object: the value as a string with exactly the currency's decimals."""
    exponent = currency_exponent(currency)
    return {"value": f"{value:.{exponent}f}", "currency": currency}


def _error(status: int, title: str, detail: str) -> dict[str, Any]:
    """Mollie's error body (mollie-api-python tests/responses/customer_doesnotexist.json)."""
    return {"status": status, "title": title, "detail": detail, "_links": DOCS}
