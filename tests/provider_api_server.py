"""Payment providers' list APIs on loopback, for backfill, reconcile and import-affiliates tests.

One server, one flavour per provider, each built from that provider's API reference (the sources are
beside the fixtures, tests/fixtures/<provider>/SOURCES.md): its auth header, its list paths, its page
parameters and its page envelope. Tests put objects in (`add`), the server lists them newest first the
way the provider does, and records every request. Faults: `fail_next(n, status, retry_after=...)`.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.events import NormalizedEvent
from providers.base import ProviderAdapter, WebhookRequest
from tests.loopback import LoopbackServer

API_KEY = "test-provider-api-key-0123456789"
Page = tuple[list[dict[str, Any]], dict[str, Any]]  # (items of the page, everything else of the body)


@dataclass(frozen=True)
class ApiRequest:
    path: str
    query: dict[str, str]
    status: int


def _created(obj: Mapping[str, Any]) -> float:
    value = obj.get("created_at")
    if value is None and isinstance(obj.get("attributes"), Mapping):
        value = obj["attributes"].get("created_at")
    if isinstance(value, int | float):
        return float(value) / 1000  # Creem: Unix milliseconds
    return datetime.fromisoformat(str(value)).timestamp()


def _number(query: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        return default


def _json_api(items: list[dict[str, Any]], query: Mapping[str, str], path: str) -> Page:
    """Lemon Squeezy: `page[number]` from 1, `page[size]` up to 100, `meta.page`, JSON:API `data`;
    `filter[store_id]`, and `filter[order_id]` of discount redemptions."""
    size = max(1, min(100, _number(query, "page[size]", 10)))
    number = max(1, _number(query, "page[number]", 1))
    for name in ("store_id", "order_id"):
        if f"filter[{name}]" in query:
            items = [i for i in items if str(i["attributes"].get(name)) == query[f"filter[{name}]"]]
    last = max(1, math.ceil(len(items) / size))
    page = items[(number - 1) * size : number * size]
    meta = {
        "page": {
            "currentPage": number,
            "from": (number - 1) * size + 1 if page else None,
            "lastPage": last,
            "perPage": size,
            "to": (number - 1) * size + len(page) if page else None,
            "total": len(items),
        }
    }
    link = f"https://api.lemonsqueezy.com{path}?page%5Bnumber%5D={{}}&page%5Bsize%5D={size}&sort=-createdAt"
    links = {"first": link.format(1), "last": link.format(last)}
    return page, {"meta": meta, "jsonapi": {"version": "1.0"}, "links": links}


def _polar(items: list[dict[str, Any]], query: Mapping[str, str], path: str) -> Page:
    """Polar: `page` from 1, `limit` up to 100, `{"items", "pagination": {total_count, max_page}}`."""
    limit = max(1, min(100, _number(query, "limit", 10)))
    page = max(1, _number(query, "page", 1))
    pagination = {"total_count": len(items), "max_page": max(1, math.ceil(len(items) / limit))}
    return items[(page - 1) * limit : page * limit], {"pagination": pagination}


def _creem(items: list[dict[str, Any]], query: Mapping[str, str], path: str) -> Page:
    """Creem: `page_number` from 1, `page_size`, `{"items", "pagination": {total_records, total_pages, …}}`."""
    size = max(1, min(100, _number(query, "page_size", 10)))
    number = max(1, _number(query, "page_number", 1))
    pages = max(1, math.ceil(len(items) / size))
    pagination = {
        "total_records": len(items),
        "total_pages": pages,
        "current_page": number,
        "next_page": number + 1 if number < pages else None,
        "prev_page": number - 1 if number > 1 else None,
    }
    return items[(number - 1) * size : number * size], {"pagination": pagination}


def _dodo(items: list[dict[str, Any]], query: Mapping[str, str], path: str) -> Page:
    """Dodo Payments: `page_number` from 0, `page_size` up to 100, `created_at_gte/lte`, `{"items"}` only."""
    size = max(1, min(100, _number(query, "page_size", 10)))
    number = max(0, _number(query, "page_number", 0))
    if "created_at_gte" in query:
        items = [i for i in items if _created(i) >= datetime.fromisoformat(query["created_at_gte"]).timestamp()]
    if "created_at_lte" in query:
        items = [i for i in items if _created(i) <= datetime.fromisoformat(query["created_at_lte"]).timestamp()]
    return items[number * size : (number + 1) * size], {}


@dataclass(frozen=True)
class Flavor:
    auth_header: str
    auth_value: str  # `{key}` is the API key
    paths: tuple[str, ...]
    page: Callable[[list[dict[str, Any]], Mapping[str, str], str], Page]
    items_field: str = "items"
    error: Callable[[int], Any] = lambda status: {"error": "test server", "status": status}
    lookups: tuple[tuple[str, str], ...] = ()  # (path, query parameter): GET one object by its id
    by_path: tuple[str, ...] = ()  # GET <path>/<id>: one object by the id in its path


FLAVORS = {
    # https://docs.lemonsqueezy.com/api/getting-started/requests (Bearer, JSON:API, errors array)
    "lemonsqueezy": Flavor(
        "authorization",
        "Bearer {key}",
        # https://docs.lemonsqueezy.com/api/discount-redemptions/list-all-discount-redemptions
        ("/v1/orders", "/v1/subscription-invoices", "/v1/affiliates", "/v1/discount-redemptions"),
        _json_api,
        items_field="data",
        error=lambda status: {"jsonapi": {"version": "1.0"}, "errors": [{"status": str(status), "title": "Error"}]},
        # https://docs.lemonsqueezy.com/api/subscriptions/retrieve-subscription
        by_path=("/v1/subscriptions",),
    ),
    # https://polar.sh/docs/api-reference/orders/list (Bearer; FastAPI's {"detail"} errors)
    "polar": Flavor(
        "authorization", "Bearer {key}", ("/v1/orders/",), _polar, error=lambda status: {"detail": "test server"}
    ),
    # https://docs.creem.io/api-reference/endpoint/get-transactions (x-api-key); look-ups:
    # /endpoint/get-customer, /endpoint/get-transaction (`GET /v1/transactions?transaction_id=`) and
    # /endpoint/get-discount-code (`GET /v1/discounts?discount_id=`)
    "creem": Flavor(
        "x-api-key",
        "{key}",
        ("/v1/transactions/search",),
        _creem,
        lookups=(
            ("/v1/customers", "customer_id"),
            ("/v1/transactions", "transaction_id"),
            ("/v1/discounts", "discount_id"),
        ),
    ),
    # https://docs.dodopayments.com/api-reference/payments/get-payments (Bearer),
    # https://docs.dodopayments.com/api-reference/discounts/get-discounts-1 (GET /discounts/{discount_id})
    "dodopayments": Flavor("authorization", "Bearer {key}", ("/payments", "/refunds"), _dodo, by_path=("/discounts",)),
}


class ProviderApiServer:
    """`with ProviderApiServer("lemonsqueezy") as api: api.add("/v1/orders", order); api.url`."""

    def __init__(self, provider: str, api_key: str = API_KEY) -> None:
        self.provider = provider
        self.flavor = FLAVORS[provider]
        self.api_key = api_key
        self._lock = threading.Lock()
        self._lists: dict[str, list[dict[str, Any]]] = {path: [] for path in self.flavor.paths}
        self._objects: dict[str, dict[str, dict[str, Any]]] = {
            path: {} for path in [*(p for p, _ in self.flavor.lookups), *self.flavor.by_path]
        }
        self._requests: list[ApiRequest] = []
        self._faults: list[tuple[int, dict[str, str]]] = []
        routes = [Route(path, self._list, methods=["GET"]) for path in self.flavor.paths]
        routes += [Route(path, self._lookup, methods=["GET"]) for path, _ in self.flavor.lookups]
        routes += [Route(path + "/{ident}", self._by_path, methods=["GET"]) for path in self.flavor.by_path]
        self._http = LoopbackServer(Starlette(routes=routes), f"{provider} API test server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.port}"

    def __enter__(self) -> Self:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def add(self, path: str, obj: Mapping[str, Any]) -> None:
        """List `obj` under `path`, replacing an object with the same id (its state changed)."""
        copy = json.loads(json.dumps(obj))
        ident = _ident(copy)
        with self._lock:
            rest = [o for o in self._lists[path] if _ident(o) != ident]
            self._lists[path] = sorted([*rest, copy], key=_created, reverse=True)

    def put(self, path: str, ident: str, obj: Mapping[str, Any]) -> None:
        """Serve `obj` for GET `path?<parameter>=<ident>` or `path/<ident>` (the flavour's look-ups)."""
        with self._lock:
            self._objects[path][ident] = json.loads(json.dumps(obj))

    def fail_next(self, n: int = 1, status: int = 503, retry_after: str | None = None) -> None:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        with self._lock:
            self._faults += [(status, headers)] * n

    @property
    def requests(self) -> list[ApiRequest]:
        with self._lock:
            return list(self._requests)

    async def _list(self, request: Request) -> Response:
        def answer() -> tuple[int, Any, dict[str, str]]:
            page, envelope = self.flavor.page(
                list(self._lists[request.url.path]), request.query_params, request.url.path
            )
            return 200, {self.flavor.items_field: page, **envelope}, {}

        return self._respond(request, answer)

    async def _lookup(self, request: Request) -> Response:
        parameter = dict(self.flavor.lookups)[request.url.path]
        return self._one(request, request.url.path, request.query_params.get(parameter, ""))

    async def _by_path(self, request: Request) -> Response:
        return self._one(request, request.url.path.rsplit("/", 1)[0], request.path_params["ident"])

    def _one(self, request: Request, path: str, ident: str) -> Response:
        def answer() -> tuple[int, Any, dict[str, str]]:
            found = self._objects[path].get(ident)
            return (200, found, {}) if found is not None else (404, self.flavor.error(404), {})

        return self._respond(request, answer)

    def _respond(self, request: Request, answer: Callable[[], tuple[int, Any, dict[str, str]]]) -> Response:
        expected = self.flavor.auth_value.format(key=self.api_key)
        headers: dict[str, str]
        with self._lock:
            if request.headers.get(self.flavor.auth_header) != expected:
                status, body, headers = 401, self.flavor.error(401), {}
            elif self._faults:
                status, headers = self._faults.pop(0)
                body = self.flavor.error(status)
            else:
                status, body, headers = answer()
            self._requests.append(ApiRequest(request.url.path, dict(request.query_params), status))
        return Response(json.dumps(body), status, headers=headers, media_type="application/json")


def _ident(obj: Mapping[str, Any]) -> str:
    for field in ("id", "payment_id", "refund_id"):
        if obj.get(field) is not None:
            return str(obj[field])
    raise ValueError("object without an id")


def read_once(adapter: ProviderAdapter, request: WebhookRequest) -> list[NormalizedEvent]:
    """What the worker makes of `request` (`read`, the adapter's API look-ups included), the adapter closed after."""

    async def read_and_close() -> list[NormalizedEvent]:
        try:
            return await adapter.read(request)
        finally:
            await adapter.aclose()

    return asyncio.run(read_and_close())
