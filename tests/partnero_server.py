"""A Partnero-shaped HTTP server on loopback for tests: the documented API, inspectable state, faults.

It models /work/shared/reference/partnero-api.md (promotion codes: §12, in the shape of
https://docs.partnero.com/api-reference/promotion-codes/get and .../promotion-codes/list, the partner
restriction as `coupon_specific_partners: [{id, full_name}]` per .../promotion-codes/create), including
the awkward cases: transaction keys are not de-duplicated (the same key posted twice is two sales),
deletes remove every live transaction with the key, unknown partners answer 400, duplicate customers 422
(or 409). Amounts are recorded as the exact Decimal the client wrote. State and fault controls are
thread-safe and meant to be called from the test thread while the bridge under test talks to `url` from
another process.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, Self
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.loopback import LoopbackServer

UnknownCustomer = Literal["404", "422", "accept"]
DuplicateCustomer = Literal["422", "409"]
FaultKind = Literal["fail", "rate_limit", "hang", "break", "random"]
Answer = tuple[int, object, dict[str, str]]


@dataclass(frozen=True)
class Partner:
    key: str
    email: str | None = None
    id: str | None = None
    name: str | None = None
    surname: str | None = None


@dataclass(frozen=True)
class Customer:
    key: str
    email: str | None = None
    name: str | None = None
    partner_key: str | None = None


@dataclass(frozen=True)
class PromotionCode:
    code: str
    partner_keys: tuple[str, ...] = ()  # empty: open to every partner
    coupon: str = "PARTNERS"


@dataclass(frozen=True)
class Transaction:
    id: int  # 1-based position in `transactions`
    key: str
    amount: Decimal | None
    reward: Decimal | None
    amount_units: str | None
    action: str | None
    customer_key: str | None
    partner_key: str | None  # None: recorded against nobody, no commission
    created_at: str
    deleted_at: str | None
    body: Mapping[str, Any]

    @property
    def live(self) -> bool:
        return self.deleted_at is None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # percent-decoded, e.g. /v1/transactions/ls:order:1
    query: str
    json: Any  # parsed with parse_float=Decimal; None when empty or malformed
    raw: bytes
    headers: Mapping[str, str]  # lower-case names
    status: int  # what the server answered (or began to answer, for break_next)
    time: float  # time.monotonic() at arrival
    in_flight: int  # requests for the same transaction key being processed at arrival, this one included
    transaction_key: str | None
    fault: FaultKind | None


@dataclass
class _Fault:
    kind: FaultKind
    remaining: int
    method: str | None
    path: str | None
    status: int = 500
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    commit: bool = True
    key: str | None = None  # only requests for this transaction key

    def matches(self, method: str, path: str, key: str | None = None) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        if self.key is not None and self.key != key:
            return False
        # A prefix may be written with or without the /v1 version segment.
        return self.path is None or path.startswith(self.path) or path[3:].startswith(self.path)


@dataclass(frozen=True)
class _Call:
    json: Any
    params: Mapping[str, str]
    query: Mapping[str, str]


_MALFORMED = object()
_Handler = Callable[[_Call], Answer]


class _BrokenResponse(Response):
    """Sends the status line, a Content-Length and half the body, then stops: uvicorn drops the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})


class PartneroServer:
    """Partnero's /v1 API served by uvicorn in a background thread; `with PartneroServer() as server: ...`."""

    def __init__(
        self,
        api_key: str = "test-partnero-key",
        *,
        unknown_customer: UnknownCustomer = "404",
        duplicate_customer: DuplicateCustomer = "422",
        commission_rate: Decimal = Decimal("0.2"),
    ) -> None:
        self.api_key = api_key
        self._defaults = (unknown_customer, duplicate_customer)
        self.unknown_customer: UnknownCustomer = unknown_customer
        self.duplicate_customer: DuplicateCustomer = duplicate_customer
        self.commission_rate = commission_rate
        self.latency = 0.0  # seconds every request spends "processing", in flight, before its effect
        # the list's `key` filter is documented, but not as exact: a Partnero that ignores it must be read right
        self.ignore_key_filter = False
        # the list's entries are documented without the partner restriction's partners: a Partnero that
        # leaves them out must be read with the single get
        self.list_omits_partners = False
        self._lock = threading.Lock()
        self._partners: dict[str, Partner] = {}
        self._customers: dict[str, Customer] = {}
        self._transactions: list[Transaction] = []
        self._promotion_codes: dict[str, PromotionCode] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._chaos: tuple[float, random.Random, str | None, str | None] | None = None
        self._in_flight: Counter[str] = Counter()
        routes = [
            self._route("/v1/test", False, GET=self._test),
            self._route(
                "/v1/transactions",
                True,
                GET=self._list_transactions,
                POST=self._create_transaction,
                DELETE=self._delete_transaction,
            ),
            self._route(
                "/v1/transactions/{key:path}", True, GET=self._get_transaction, DELETE=self._delete_transaction
            ),
            self._route("/v1/customers", False, POST=self._create_customer),
            self._route("/v1/partners", False, GET=self._list_partners, POST=self._create_partner),
            self._route("/v1/partners/{key:path}", False, GET=self._get_partner),
            self._route("/v1/promotion-codes", False, GET=self._list_promotion_codes),
            self._route("/v1/promotion-codes/{code:path}", False, GET=self._get_promotion_code),
            self._route("/v1/customers/{key:path}", False, GET=self._get_customer),
        ]
        app = Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})
        self._http = LoopbackServer(app, "Partnero test server")

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL ending in /v1, e.g. http://127.0.0.1:54321/v1."""
        return f"http://127.0.0.1:{self._http.port}/v1"

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

    def add_partner(self, key: str, email: str | None = None, id: str | int | None = None) -> Partner:
        partner = Partner(key, email, None if id is None else str(id))
        with self._lock:
            self._partners[key] = partner
        return partner

    def add_customer(
        self, key: str, partner_key: str | None = None, email: str | None = None, name: str | None = None
    ) -> Customer:
        customer = Customer(key, email, name, partner_key)
        with self._lock:
            self._customers[key] = customer
        return customer

    def add_promotion_code(self, code: str, *partner_keys: str, coupon: str = "PARTNERS") -> PromotionCode:
        """A promotion code limited to these partners (each added before, with an id), or open to all."""
        promotion_code = PromotionCode(code, tuple(partner_keys), coupon)
        with self._lock:
            for key in partner_keys:
                if self._partners.get(key) is None or self._partners[key].id is None:
                    raise ValueError(f"add partner {key!r} with an id first: codes name partners by id")
            self._promotion_codes[code] = promotion_code
        return promotion_code

    def add_transaction(self, key: str, customer_key: str, amount: Decimal = Decimal("10.00")) -> Transaction:
        """A sale recorded at Partnero by someone else (another integration, an earlier run)."""
        with self._lock:
            customer = self._customers.get(customer_key)
            transaction = Transaction(
                id=len(self._transactions) + 1,
                key=key,
                amount=amount,
                reward=None,
                amount_units="USD",
                action="sale",
                customer_key=customer_key,
                partner_key=customer.partner_key if customer else None,
                created_at=_timestamp(),
                deleted_at=None,
                body={},
            )
            self._transactions.append(transaction)
        return transaction

    @property
    def transactions(self) -> list[Transaction]:
        """Every transaction ever stored, in order, deleted ones included."""
        with self._lock:
            return list(self._transactions)

    def live_transactions(self) -> list[Transaction]:
        with self._lock:
            return [t for t in self._transactions if t.live]

    def ledger(self) -> dict[str, list[Decimal | None]]:
        """Amounts of the live transactions by key: {"ls:order:1": [Decimal("9.99")]}."""
        result: dict[str, list[Decimal | None]] = {}
        for transaction in self.live_transactions():
            result.setdefault(transaction.key, []).append(transaction.amount)
        return result

    @property
    def customers(self) -> dict[str, Customer]:
        with self._lock:
            return dict(self._customers)

    @property
    def partners(self) -> dict[str, Partner]:
        with self._lock:
            return dict(self._partners)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget all state, faults and switches (the server keeps running on the same port)."""
        with self._lock:
            self._partners.clear()
            self._customers.clear()
            self._transactions.clear()
            self._promotion_codes.clear()
            self._requests.clear()
            self._faults.clear()
            self._chaos = None
        self.unknown_customer, self.duplicate_customer = self._defaults
        self.latency = 0.0
        self.ignore_key_filter = False
        self.list_omits_partners = False

    def wait_for(self, condition: Callable[[PartneroServer], bool], timeout: float = 10.0) -> None:
        """Poll until `condition(self)` holds; the bridge runs in another process, so tests must wait."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s; last requests: {self.requests[-10:]}")
            time.sleep(0.01)

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        key: str | None = None,
    ) -> None:
        """Answer the next n matching calls (for one transaction key, if given) with `status`, committing nothing."""
        body = {"message": "Server Error"} if body is None else body
        self._add_fault(_Fault("fail", n, method, path, status, body, dict(headers or {}), key=key))

    def clear_faults(self) -> None:
        """Partnero heals: every queued fault and the random failures stop; the data stays."""
        with self._lock:
            self._faults.clear()
            self._chaos = None

    def rate_limit_next(
        self, n: int = 1, retry_after: int | str | None = None, *, method: str | None = None, path: str | None = None
    ) -> None:
        """Answer 429 (documented without headers; Retry-After only when given) without committing."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self._add_fault(_Fault("rate_limit", n, method, path, 429, {"message": "Too Many Attempts."}, headers))

    def hang_next(
        self, n: int, seconds: float, commit: bool = True, *, method: str | None = None, path: str | None = None
    ) -> None:
        """Commit the effect, then wait `seconds` before answering: the client times out after Partnero
        recorded the call. With commit=False nothing is recorded and a late 504 follows."""
        self._add_fault(_Fault("hang", n, method, path, seconds=seconds, commit=commit))

    def break_next(
        self, n: int = 1, commit: bool = True, *, method: str | None = None, path: str | None = None
    ) -> None:
        """Commit the effect (unless commit=False), then drop the connection halfway through the body."""
        self._add_fault(_Fault("break", n, method, path, commit=commit))

    def fail_ratio(self, p: float, seed: int = 0, *, method: str | None = None, path: str | None = None) -> None:
        """Answer a random 500/502/503 to a fraction p of calls, without committing; p=0 turns it off."""
        with self._lock:
            self._chaos = (p, random.Random(seed), method, path) if p > 0 else None

    def _add_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str, path: str, key: str | None) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.matches(method, path, key):
                fault.remaining -= 1
                return fault
        if self._chaos is not None:
            p, rng, chaos_method, chaos_path = self._chaos
            probe = _Fault("random", 1, chaos_method, chaos_path)
            if probe.matches(method, path) and rng.random() < p:
                probe.status = rng.choice((500, 502, 503))
                probe.body = {"message": "Server Error"}
                return probe
        return None

    # -- HTTP plumbing (server thread) ------------------------------------------------------------------

    def _route(self, path: str, keyed: bool, **handlers: _Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            handler = handlers["GET" if request.method == "HEAD" else request.method]
            return await self._handle(request, handler, keyed)

        return Route(path, endpoint, methods=list(handlers))

    async def _handle(self, request: Request, handler: _Handler, keyed: bool) -> Response:
        arrived = time.monotonic()
        method, path = request.method, request.url.path
        raw = await request.body()
        try:
            payload: Any = json.loads(raw, parse_float=Decimal) if raw.strip() else None
        except ValueError:
            payload = _MALFORMED
        call = _Call(payload, dict(request.path_params), dict(request.query_params))
        key = _transaction_key(call) if keyed else None
        authorized = request.headers.get("authorization") == f"Bearer {self.api_key}"
        with self._lock:
            fault = self._take_fault(method, path, key) if authorized else None
            if key is not None:
                self._in_flight[key] += 1
            in_flight = self._in_flight[key] if key is not None else 0
        try:
            if self.latency > 0:
                await self._http.sleep(self.latency)
            status, body, headers = self._answer(call, handler, authorized, fault)
        finally:
            if key is not None:
                with self._lock:
                    self._in_flight[key] -= 1
        record = RecordedRequest(
            method,
            path,
            request.url.query,
            None if payload is _MALFORMED else payload,
            raw,
            dict(request.headers),
            status,
            arrived,
            in_flight,
            key,
            None if fault is None else fault.kind,
        )
        with self._lock:
            self._requests.append(record)
        if fault is not None and fault.kind == "hang":
            # Deliberately outside the in-flight window: the client has given up, its retry is not concurrent.
            await self._http.sleep(fault.seconds)
        response = _response(status, body, headers)
        if fault is not None and fault.kind == "break":
            return _BrokenResponse(response.body, response.status_code, dict(response.headers))
        return response

    def _answer(self, call: _Call, handler: _Handler, authorized: bool, fault: _Fault | None) -> Answer:
        if not authorized:
            return 401, {"message": "Unauthenticated."}, {}
        if fault is not None and fault.kind in ("fail", "rate_limit", "random"):
            return fault.status, fault.body, fault.headers
        if fault is not None and not fault.commit:
            if fault.kind == "hang":
                return 504, {"message": "Gateway Timeout"}, {}
            return 502, {"message": "Bad Gateway"}, {}
        if call.json is _MALFORMED:
            return 400, {"message": "The request body is not valid JSON."}, {}
        with self._lock:
            return handler(call)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _response(exc.status_code, {"message": exc.detail}, dict(exc.headers or {}))

    # -- the API (called with the lock held) ----------------------------------------------------------

    def _test(self, call: _Call) -> Answer:
        return 200, {"data": {"authenticated": True}, "status": 1}, {}

    def _create_transaction(self, call: _Call) -> Answer:
        body = _object(call.json)
        errors: dict[str, list[str]] = {}
        if not _text(body.get("key")):
            errors["key"] = ["The key field is required."]
        amount, reward = body.get("amount"), body.get("reward")
        if amount is None and reward is None:
            errors["amount"] = ["The amount field is required when reward is not present."]
        for name, value in (("amount", amount), ("reward", reward)):
            if value is not None and (not isinstance(value, int | Decimal) or isinstance(value, bool)):
                errors[name] = [f"The {name} must be a number."]
        ref = _object(body.get("customer"))
        if not (_text(ref.get("key")) or _text(ref.get("email"))):
            errors["customer.key"] = ["The customer.key field is required without customer.email."]
        if errors:
            return _invalid(errors)
        customer = self._find_customer(ref)
        options = _object(body.get("options"))
        if customer is None and options.get("create_customer") is True:
            created = self._customer_from(ref, "customer.")
            if not isinstance(created, Customer):
                return created
            customer = self._customers[created.key] = created
        if customer is None and self.unknown_customer == "404":
            return 404, {"message": "Customer not found."}, {}
        if customer is None and self.unknown_customer == "422":
            return _invalid({"customer.key": ["The selected customer.key is invalid."]})
        created_at = body.get("created_at")
        transaction = Transaction(
            id=len(self._transactions) + 1,
            key=body["key"],
            amount=None if amount is None else Decimal(amount),
            reward=None if reward is None else Decimal(reward),
            amount_units=_text(body.get("amount_units")),
            action=_text(body.get("action")),
            customer_key=customer.key if customer else _text(ref.get("key")),
            partner_key=customer.partner_key if customer else None,
            created_at=_timestamp(created_at if isinstance(created_at, int) else None),
            deleted_at=None,
            body=body,
        )
        self._transactions.append(transaction)
        return 200, {"data": self._render_transaction(transaction), "status": 1}, {}

    def _list_transactions(self, call: _Call) -> Answer:
        paging = _paging(call)
        if not isinstance(paging, tuple) or len(paging) != 2:
            return paging
        limit, page = paging
        key = call.query.get("key")
        wanted = None if self.ignore_key_filter else key
        found = [t for t in self._transactions if t.live and (wanted is None or t.key == wanted)]
        chunk = found[(page - 1) * limit : page * limit]
        last = max((len(found) + limit - 1) // limit, 1)
        path = f"{self.url}/transactions"
        filters = {"key": key} if key is not None else {}

        def link(number: int) -> str | None:
            return f"{path}?{urlencode({**filters, 'limit': limit, 'page': number})}" if 1 <= number <= last else None

        start = (page - 1) * limit + 1
        meta = {
            "current_page": page,
            "from": start if chunk else None,
            "last_page": last,
            "path": path,
            "per_page": limit,
            "to": start + len(chunk) - 1 if chunk else None,
            "total": len(found),
        }
        links = {"first": link(1), "last": link(last), "prev": link(page - 1), "next": link(page + 1)}
        data = [self._render_transaction(t) for t in chunk]
        return 200, {"data": data, "links": links, "meta": meta, "status": 1}, {}

    def _get_transaction(self, call: _Call) -> Answer:
        found = [t for t in self._transactions if t.live and t.key == call.params["key"]]
        if not found:
            return 404, {"message": "Transaction not found"}, {}
        return 200, {"data": self._render_transaction(found[-1]), "status": 1}, {}

    def _delete_transaction(self, call: _Call) -> Answer:
        key = call.params.get("key") or (_text(call.json.get("key")) if isinstance(call.json, dict) else None)
        if not key:
            return _invalid({"key": ["The key field is required."]})
        now, deleted = _timestamp(), 0
        for index, transaction in enumerate(self._transactions):
            if transaction.live and transaction.key == key:
                self._transactions[index] = replace(transaction, deleted_at=now)
                deleted += 1
        if not deleted:
            return 404, {"message": "Transaction not found"}, {}
        return 200, {"status": 1}, {}

    def _create_customer(self, call: _Call) -> Answer:
        created = self._customer_from(_object(call.json), "")
        if not isinstance(created, Customer):
            return created
        self._customers[created.key] = created
        return 200, {"data": self._render_customer(created), "status": 1}, {}

    def _list_promotion_codes(self, call: _Call) -> Answer:
        paging = _paging(call)
        if not isinstance(paging, tuple) or len(paging) != 2:
            return paging
        limit, page = paging
        found = list(self._promotion_codes.values())
        chunk = found[(page - 1) * limit : page * limit]
        last = max((len(found) + limit - 1) // limit, 1)
        meta = {"current_page": page, "last_page": last, "per_page": limit, "total": len(found)}
        data = [self._render_promotion_code(c) for c in chunk]
        if self.list_omits_partners:
            data = [{k: v for k, v in c.items() if k != "coupon_specific_partners"} for c in data]
        return 200, {"data": data, "meta": meta, "status": 1}, {}

    def _get_promotion_code(self, call: _Call) -> Answer:
        found = self._promotion_codes.get(call.params["code"])
        if found is None:
            return 404, {"message": "Promotion code not found."}, {}
        return 200, {"data": self._render_promotion_code(found), "status": 1}, {}

    def _render_promotion_code(self, promotion_code: PromotionCode) -> dict[str, object]:
        partners = [self._partners[key] for key in promotion_code.partner_keys if key in self._partners]
        return {
            "code": promotion_code.code,
            "first_time_order": False,
            "limit_to_specific_partner": bool(promotion_code.partner_keys),
            "coupon_specific_partners": [{"id": p.id, "full_name": p.email or p.key} for p in partners],
            "limit_to_specific_customer": False,
            "coupon_specific_customers": [],
            "minimum_order_status": False,
            "minimum_order_value": None,
            "expiration_date_status": False,
            "expiration_date_value": None,
            "redemption_times_status": False,
            "redemption_times_value": None,
            "times_redeemed": 0,
            "metadata": [],
            "coupon": {
                "name": promotion_code.coupon,
                "uuid_code": promotion_code.coupon.lower(),
                "active": True,
                "coupon_discount_type": "percent",
                "coupon_discount_amount": 20,
                "coupon_duration_type": "once",
                "coupon_duration_value": None,
            },
        }

    def _get_customer(self, call: _Call) -> Answer:
        customer = self._customers.get(call.params["key"])
        if customer is None:
            return 404, {"message": "Customer not found."}, {}
        return 200, {"data": self._render_customer(customer), "status": 1}, {}

    def _customer_from(self, fields: Mapping[str, Any], prefix: str) -> Customer | Answer:
        """Validate a new customer (a POST /customers body, or `customer` with options.create_customer)."""
        key, ref = _text(fields.get("key")), fields.get("partner")
        errors: dict[str, list[str]] = {}
        if key is None:
            errors[f"{prefix}key"] = [f"The {prefix}key field is required."]
        if not isinstance(ref, dict) or not any(_text(ref.get(name)) for name in ("key", "id", "email")):
            errors[f"{prefix}partner"] = [f"The {prefix}partner field is required."]
        if errors:
            return _invalid(errors)
        if key in self._customers:
            if self.duplicate_customer == "409":
                return 409, {"message": "Duplicate key"}, {}
            return 422, {"message": "Duplicate key", "errors": {f"{prefix}key": ["Duplicate key"]}}, {}
        assert key is not None and isinstance(ref, dict)
        partner = self._find_partner(ref)
        if partner is None:
            return 400, {"message": "Invalid partner key"}, {}
        return Customer(key, _text(fields.get("email")), _text(fields.get("name")), partner.key)

    # Partners as Partnero's official clients send and read them (partnero/partnero-php src/Models/Partner.php
    # and src/Endpoints/Partners.php: id, key, email, name, surname; find by key or email;
    # partnero/n8n-nodes-partnero resources/partner/create.ts: email required, key generated when omitted).
    # The answers use the customers' documented envelope ({"data": …, "status": 1}); a duplicate email is a
    # Laravel 422 like the customers' duplicate key (both unconfirmed for partners).

    def _list_partners(self, call: _Call) -> Answer:
        email, key = _text(call.query.get("email")), _text(call.query.get("key"))
        found = [
            p
            for p in self._partners.values()
            if (email is None or (p.email or "").lower() == email.lower()) and (key is None or p.key == key)
        ]
        return 200, {"data": [_render_partner(p) for p in found], "status": 1}, {}

    def _get_partner(self, call: _Call) -> Answer:
        partner = self._partners.get(call.params["key"])
        if partner is None:
            return 404, {"message": "Partner not found."}, {}
        return 200, {"data": _render_partner(partner), "status": 1}, {}

    def _create_partner(self, call: _Call) -> Answer:
        body = _object(call.json)
        email = _text(body.get("email"))
        if email is None:
            return _invalid({"email": ["The email field is required."]})
        if any((p.email or "").lower() == email.lower() for p in self._partners.values()):
            return _invalid({"email": ["The email has already been taken."]})
        key = _text(body.get("key")) or f"ptr{len(self._partners) + 1:04d}"
        if key in self._partners:
            return _invalid({"key": ["The key has already been taken."]})
        partner = Partner(key, email, str(len(self._partners) + 1), _text(body.get("name")), _text(body.get("surname")))
        self._partners[key] = partner
        return 201, {"data": _render_partner(partner), "status": 1}, {}

    def _find_customer(self, ref: Mapping[str, Any]) -> Customer | None:
        key, email = _text(ref.get("key")), _text(ref.get("email"))
        if key:
            return self._customers.get(key)
        return next((c for c in self._customers.values() if email and c.email == email), None)

    def _find_partner(self, ref: Mapping[str, Any]) -> Partner | None:
        for field_name in ("key", "id", "email"):
            wanted = _text(ref.get(field_name))
            if wanted:
                return next((p for p in self._partners.values() if getattr(p, field_name) == wanted), None)
        return None

    def _render_customer(self, customer: Customer) -> dict[str, object]:
        partner = self._partners.get(customer.partner_key or "")
        rendered = {"key": customer.key, "email": customer.email, "name": customer.name}
        return {**rendered, "partner": None if partner is None else _render_partner(partner)}

    def _render_transaction(self, transaction: Transaction) -> dict[str, object]:
        customer = self._customers.get(transaction.customer_key or "")
        partner = self._partners.get(transaction.partner_key or "")
        common = {
            "action": transaction.action,
            "customer": None if customer is None else {"key": customer.key, "email": customer.email},
            "partner": None if partner is None else _render_partner(partner),
            "amount_units": transaction.amount_units,
            "is_currency": True,
            "credit": False,
            "created_at": transaction.created_at,
            "deleted_at": transaction.deleted_at,
        }
        rewards: list[dict[str, object]] = []
        if partner is not None:
            commission = transaction.reward
            if commission is None and transaction.amount is not None:
                commission = transaction.amount * self.commission_rate
            product = {name: transaction.body.get(name) for name in ("product_id", "product_type")}
            rewards.append(
                {
                    **common,
                    "key": f"rwd_{transaction.id}",
                    "status": "ok",
                    "amount": commission,
                    "product_type_data": product,
                }
            )
        return {**common, "key": transaction.key, "amount": transaction.amount, "rewards": rewards}


def _render_partner(partner: Partner) -> dict[str, object]:
    return {
        "key": partner.key,
        "id": partner.id,
        "email": partner.email,
        "name": partner.name,
        "surname": partner.surname,
    }


def _transaction_key(call: _Call) -> str | None:
    if "key" in call.params:
        return call.params["key"]
    if isinstance(call.json, dict) and _text(call.json.get("key")):
        return str(call.json["key"])
    return call.query.get("key")


def _paging(call: _Call) -> tuple[int, int] | Answer:
    """(limit, page) of a list call, Partnero's bounds (1-250, default 15), or the 422 for junk."""
    try:
        return min(max(int(call.query.get("limit", "15")), 1), 250), max(int(call.query.get("page", "1")), 1)
    except ValueError:
        return _invalid({"limit": ["The limit and page must be integers."]})


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp(unix: int | None = None) -> str:
    moment = datetime.now(UTC) if unix is None else datetime.fromtimestamp(unix, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _invalid(errors: dict[str, list[str]]) -> Answer:
    """Laravel's 422 shape: the first message (plus a count of the others) and the full `errors` map."""
    messages = [message for field_errors in errors.values() for message in field_errors]
    more = f" (and {len(messages) - 1} more errors)" if len(messages) > 1 else ""
    return 422, {"message": messages[0] + more, "errors": errors}, {}


def _encode(value: object) -> str:
    """JSON text with Decimals written as exact numbers (json.dumps would need a float)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    return json.dumps(value)


def _response(status: int, body: object, headers: dict[str, str]) -> Response:
    if isinstance(body, str | bytes):
        return Response(body, status, headers, media_type="text/plain")
    return Response(_encode(body), status, headers, media_type="application/json")
