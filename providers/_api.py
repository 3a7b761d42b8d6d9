"""Reading a provider's API for past payments: options, a paced and bounded HTTP client, the records.

Backfill and reconcile ask the provider's API for the payments of a time window (`list_payments` on an
adapter). Every request counts against the run's budget (reconcile in the worker is bounded), requests
are spaced to stay under the provider's published rate limit, a 429 is waited out when its Retry-After
is short and ends the run otherwise, and transient failures are retried a few times. The API key is an
endpoint setting (`api_key: ${LEMONSQUEEZY_API_KEY}`); it never appears in an error or a log line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from pydantic import Field, SecretStr

from bridge.events import EventKind, NormalizedEvent
from providers.base import AdapterOptions, ProviderUnavailable

MAX_RETRY_AFTER_WAIT = 60.0  # seconds a run waits out a 429 before it stops and says so
TRANSIENT_RETRIES = 3


class ApiOptions(AdapterOptions):
    """Endpoint settings of a provider whose API lists payments (for backfill and reconcile)."""

    api_key: SecretStr | None = None
    # the provider's API root; tests point it at a loopback server
    api_base_url: str | None = None
    api_timeout_seconds: float = Field(default=15.0, gt=0)
    # requests per second toward the provider's API; below every provider's published limit by default
    api_requests_per_second: float = Field(default=2.0, gt=0)


class HistoryUnavailable(Exception):
    """This endpoint cannot list past payments (no API support, or no `api_key`); says which."""


class ApiError(Exception):
    """The provider's API refused the request for good (a wrong key, a bad filter); the run stops."""


class ApiRateLimited(Exception):
    """The provider's API asked to wait longer than a run waits; the run stops with what it has."""


class ApiBudgetSpent(Exception):
    """The run used the API requests it was allowed; it stops with what it has."""


@dataclass
class HistoryWindow:
    """What one backfill or reconcile run asks for: payments made in [since, until)."""

    since: datetime
    until: datetime
    max_requests: int | None = None
    on_page: Callable[[int], object] | None = None  # told how many objects each page brought
    requests: int = 0

    def contains(self, moment: datetime | None) -> bool:
        return moment is not None and self.since <= moment < self.until


@dataclass(frozen=True)
class PaymentRecord:
    """One payment as the provider's API describes it now, and what it means as normalized events
    (its sale, then its refunds), produced by the adapter's own parsing rules."""

    source: str  # `<object type>/<id>` at the provider, for the operator
    occurred_at: datetime | None
    api_object: Mapping[str, Any]
    events: list[NormalizedEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Affiliate:
    """One of the provider's own affiliates, as a Partnero partner would be created from it."""

    source: str  # `<object type>/<id>` at the provider, what the import prints instead of personal data
    email: str | None
    name: str | None
    surname: str | None
    active: bool
    status: str | None


class ApiClient:
    """GET requests to one provider's API for one run: paced, counted, retried, errors made plain."""

    def __init__(
        self,
        provider: str,
        options: AdapterOptions,
        default_base_url: str,
        auth_headers: Mapping[str, str],
        window: HistoryWindow,
    ) -> None:
        self.provider = provider
        self.window = window
        # adapters whose options predate ApiOptions (Mollie's) get the same defaults
        self._interval = 1.0 / float(getattr(options, "api_requests_per_second", 2.0))
        self._last = 0.0
        timeout = getattr(options, "api_timeout_seconds", getattr(options, "timeout_seconds", 15.0))
        self._client = httpx.AsyncClient(
            base_url=(getattr(options, "api_base_url", None) or default_base_url).rstrip("/") + "/",
            headers={"accept": "application/json", **auth_headers},
            timeout=float(timeout),
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """The JSON answer (numbers with a fraction as Decimal) of GET `path`, after pacing and retries."""
        failures = 0
        while True:
            if self.window.max_requests is not None and self.window.requests >= self.window.max_requests:
                raise ApiBudgetSpent(f"stopped after {self.window.requests} {self.provider} API requests (the limit)")
            await self._pace()
            self.window.requests += 1
            try:
                response = await self._client.get(path.lstrip("/"), params=dict(params or {}))
            except httpx.HTTPError as exc:
                failures += 1
                if failures > TRANSIENT_RETRIES:
                    raise ApiError(f"{self.provider} API unreachable ({type(exc).__name__})") from None
                await asyncio.sleep(2**failures * 0.25)
                continue
            status = response.status_code
            if status == 429:
                wait = _retry_after(response.headers.get("retry-after"))
                if wait > MAX_RETRY_AFTER_WAIT:
                    raise ApiRateLimited(f"{self.provider} API rate limit: asked to wait {wait:.0f}s")
                await asyncio.sleep(wait)
                continue
            if status >= 500:
                failures += 1
                if failures > TRANSIENT_RETRIES:
                    raise ApiError(f"{self.provider} API answered {status} {TRANSIENT_RETRIES + 1} times")
                await asyncio.sleep(2**failures * 0.25)
                continue
            if status in (401, 403):
                raise ApiError(f"{self.provider} API refused the endpoint's api_key ({status})")
            if status != 200:
                raise ApiError(f"{self.provider} API answered {status} for {path}")
            try:
                return json.loads(response.content, parse_float=Decimal)
            except (ValueError, RecursionError):
                raise ApiError(f"{self.provider} API answered something that is not JSON for {path}") from None

    async def _pace(self) -> None:
        wait = self._last + self._interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last = time.monotonic()


async def read_object(
    client: httpx.AsyncClient, provider: str, path: str, params: Mapping[str, str | int] | None = None
) -> dict[str, Any] | int:
    """One object a webhook read needs from the provider's API (Mollie's payment, Creem's transaction).

    Answers the JSON object of a 200, or the status of any other 4xx for the caller to judge (an id the
    API does not know). Whatever may pass raises `ProviderUnavailable`, so the stored webhook is read
    again later: no answer, a timeout, 429, 5xx, a refused key (fixing it lets the waiting calls
    through), and a 200 that is not a JSON object.
    """
    try:
        # no `params` at all when there are none: an empty one would drop the query already in `path`
        response = await (client.get(path, params=dict(params)) if params else client.get(path))
    except httpx.TimeoutException:
        raise ProviderUnavailable(f"{provider} API timed out") from None
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"{provider} API unreachable ({type(exc).__name__})") from None
    status = response.status_code
    if status in (401, 403):
        raise ProviderUnavailable(f"{provider} API refused the api_key ({status})")
    if status == 429 or status >= 500:
        raise ProviderUnavailable(f"{provider} API answered {status}")
    if status != 200:
        return status
    try:
        data = json.loads(response.content, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise ProviderUnavailable(f"{provider} API answered something that is not JSON") from None
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"{provider} API answered JSON that is not an object")
    return data


class WebhookLookup:
    """GET requests to a provider's API while a stored webhook is read (a discount's code, say).

    One client per endpoint, opened on the worker's event loop at first use. No retries here: every
    failure that may pass (unreachable, a timeout, 429, 5xx, a refused key, an answer that is not a JSON
    object) raises `ProviderUnavailable` (`read_object`), so the recorder keeps the call and reads it
    again later with the delivery backoff. Nothing of the call is recorded before the read succeeds,
    so a failed look-up neither loses the sale nor records it twice. A 404 answers None: the object is
    gone for good, and the caller records the sale without it.
    """

    def __init__(self, provider: str, options: AdapterOptions, default_base_url: str, auth_headers: Mapping[str, str]):
        self.provider = provider
        self._base_url = (getattr(options, "api_base_url", None) or default_base_url).rstrip("/") + "/"
        self._headers = {"accept": "application/json", "user-agent": "partnero-bridge", **auth_headers}
        self._timeout = float(getattr(options, "api_timeout_seconds", 15.0))
        # opened on first use, on the worker's event loop (adapters are built with the configuration)
        self._client: httpx.AsyncClient | None = None

    async def fetch(self, path: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any] | int:
        """`read_object` on this endpoint's client: the object, or the status of a 4xx for the caller to judge."""
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self._base_url, headers=self._headers, timeout=self._timeout)
        return await read_object(self._client, self.provider, path.lstrip("/"), params)

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any] | None:
        """The object; None when the API no longer has it (404); any other 4xx may pass, so it raises."""
        answer = await self.fetch(path, params)
        if answer == 404:
            return None
        if isinstance(answer, int):
            raise ProviderUnavailable(f"{self.provider} API answered {answer}")
        return answer

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def read_code(
    events: list[NormalizedEvent],
    lookup: WebhookLookup | None,
    reference: str | None,
    fetch: Callable[[WebhookLookup, str], Awaitable[str | None]],
    missing: str,
) -> list[NormalizedEvent]:
    """`events` of a webhook whose sale names a discount only by `reference` (an id), with the code `fetch`
    reads through `lookup` put on the sale; unchanged when the endpoint has no API key or nothing to read."""
    if reference is None or lookup is None or not any(e.kind is EventKind.SALE for e in events):
        return events
    return with_code(events, await fetch(lookup, reference), missing)


def code_of(discount: Any, provider: str) -> str | None:
    """The `code` of a discount object a look-up answered (None: 404, or no code)."""
    if discount is None:
        return None
    if not isinstance(discount, Mapping):
        raise ProviderUnavailable(f"{provider} API answered a discount that is not an object")
    code = discount.get("code")
    return code.strip() if isinstance(code, str) and code.strip() else None


def with_code(events: list[NormalizedEvent], code: str | None, missing: str) -> list[NormalizedEvent]:
    """`events` with the discount code an API look-up found put on the sale; `missing` says why there is none."""
    return [
        replace(e, coupon_code=code, reason=None if code else missing) if e.kind is EventKind.SALE else e
        for e in events
    ]


def configured_key(options: AdapterOptions) -> str | None:
    """The endpoint's API key, or None when it has none (`${VAR}` of an unset variable is empty)."""
    key = getattr(options, "api_key", None)
    if isinstance(key, SecretStr) and key.get_secret_value().strip():
        return key.get_secret_value().strip()
    return None


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return MAX_RETRY_AFTER_WAIT + 1  # an HTTP date or junk: not something to wait out blindly


def api_key(provider: str, options: AdapterOptions) -> str:
    """The endpoint's API key, or the sentence that says where to set it."""
    key = configured_key(options)
    if key is None:
        raise HistoryUnavailable(f"{provider}: set the endpoint's api_key to read payments from the {provider} API")
    return key


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string or Unix milliseconds (Creem) as an aware datetime; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return datetime.fromtimestamp(float(value) / 1000, tz=UTC)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ListShape:
    """How one provider's list endpoint pages: the query of page n, where the items are, when to stop."""

    params: Callable[[int, Any], dict[str, str | int]]  # (page number, the previous answer or None)
    items: Callable[[Any], list[Any]]
    more: Callable[[Any, int, int], bool]  # (answer, page number, items on it) -> is there a next page
    created_at: Callable[[Mapping[str, Any]], datetime | None]
    first_page: int = 1
    newest_first: bool = True  # items older than the window mean the rest is older still


async def list_window(client: ApiClient, path: str, shape: ListShape) -> list[Mapping[str, Any]]:
    """Every object of `path` created inside the client's window, page by page, within its budget."""
    window = client.window
    found: list[Mapping[str, Any]] = []
    page, previous = shape.first_page, None
    while True:
        answer = await client.get(path, shape.params(page, previous))
        items = [item for item in shape.items(answer) if isinstance(item, Mapping)]
        if window.on_page is not None:
            window.on_page(len(items))
        older = False
        for item in items:
            created = shape.created_at(item)
            if window.contains(created):
                found.append(item)
            elif created is not None and created < window.since and shape.newest_first:
                older = True
        if older or not items or not shape.more(answer, page, len(items)):
            return found
        page, previous = page + 1, answer


def webhook_events(adapter: Any, envelope: Mapping[str, Any]) -> list[NormalizedEvent]:
    """The events the adapter makes of the webhook that would announce this API object: its own rules,
    so the same transaction keys and amounts as a delivered webhook."""
    from providers.base import WebhookRequest

    body = json.dumps(envelope, default=str).encode()
    events: list[NormalizedEvent] = adapter.parse(WebhookRequest("GET", "/api", {}, body))
    return events
