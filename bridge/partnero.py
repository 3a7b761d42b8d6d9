"""The Partnero REST API client: requests sent directly on aiohttp's pool, every answer classified into an
outcome.

Requests go straight to an `aiohttp.ClientSession`: httpx's client layers (request building, URL merging,
cookies, auth and redirect hooks) cost a fifth of the worker's CPU at full drain, and under concurrency
httpcore's pool scans every connection on every request (encode/httpx#3215). What exactly-once rests on
is how a request that got no answer is classified (`_unanswered`): only a failure *before the request was
written* (no connection, no pool slot in time) may be resent without a look-up; everything else may have
reached Partnero and is reported `maybe_sent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import yarl

USER_AGENT = "partnero-bridge"
# how far a look-up reads a transaction list that ignores its `key` filter before asking for the key itself
LOOKUP_PAGE_SIZE = 100
LOOKUP_MAX_PAGES = 20
# a program's promotion codes are read whole (codes match case-insensitively, the get is by exact code)
PROMOTION_CODE_MAX_PAGES = 100


class Result(StrEnum):
    DELIVERED = "delivered"
    SKIPPED = "skipped"  # a final answer that is not a failure: not referred, unknown customer, …
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Outcome:
    result: Result
    detail: str
    status_code: int | None = None
    retry_after: float | None = None
    # the request may have reached Partnero (timeout, reset, 5xx): look the key up before re-sending
    maybe_sent: bool = False


@dataclass(frozen=True)
class Answer:
    """Partnero's answer, read whole (answers are small)."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    content: bytes
    reason_phrase: str = ""
    charset: str | None = None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; `ValueError` when it is not."""
        return json.loads(self.content)


class PartneroClient:
    """One aiohttp session per event loop, `max_connections` wide (a client may serve `asyncio.run` after
    `asyncio.run` in the CLI; a session belongs to the loop it was made on)."""

    def __init__(self, base_url: str, api_key: str, timeout_seconds: float, max_connections: int = 8) -> None:
        self.base_url = base_url.rstrip("/")
        # the base normalized once (IDNA host, percent-encoded path); each request appends an encoded path
        self._base = str(yarl.URL(self.base_url))
        self.max_connections = max_connections
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": USER_AGENT}
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        # `connect` bounds the wait for a pool slot and the connection together, `sock_read` each read
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_seconds, sock_connect=timeout_seconds, sock_read=timeout_seconds
        )
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, ttl_dns_cache=300)
            # no cookie jar: Partnero is a bearer-token API, and a jar is work on every answer
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True
            )
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to close
                await self._session.close()
        self._session = None

    async def _request(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, content: bytes | None = None
    ) -> Answer:
        """One request, its answer read whole; aiohttp's errors propagate (`_unanswered` classifies them)."""
        url = self._base + path
        if params:
            url += "?" + urlencode(params)
        async with self._session_for_loop().request(
            method,
            # already encoded: yarl must not decode `%2E` and fold `/..` (a key of dots)
            yarl.URL(url, encoded=True),
            headers=self._json_headers if content is not None else self._headers,
            data=content,
            allow_redirects=False,
            timeout=self._timeout,
        ) as response:
            body = await response.read()
            return Answer(response.status, response.headers, body, response.reason or "", response.charset)

    async def create_transaction(self, body: dict[str, Any]) -> Outcome:
        response_or_outcome = await self._send("POST", "/transactions", body)
        if isinstance(response_or_outcome, Outcome):
            return response_or_outcome
        response = response_or_outcome
        if response.is_success:
            return Outcome(Result.DELIVERED, "created", response.status_code)
        message = _message(response)
        if response.status_code in (404, 422) and "customer" in message.lower():
            return Outcome(Result.SKIPPED, f"customer not known to Partnero: {message}", response.status_code)
        if response.status_code == 400 and "partner" in message.lower():
            return Outcome(Result.SKIPPED, f"not referred: {message}", response.status_code)
        return _classify_failure(response, message)

    async def create_customer(self, body: dict[str, Any]) -> Outcome:
        response_or_outcome = await self._send("POST", "/customers", body)
        if isinstance(response_or_outcome, Outcome):
            return response_or_outcome
        response = response_or_outcome
        if response.is_success:
            return Outcome(Result.DELIVERED, "customer created", response.status_code)
        message = _message(response)
        lowered = message.lower()
        if response.status_code == 409 or (
            response.status_code == 422 and ("duplicate" in lowered or "exist" in lowered)
        ):
            return Outcome(Result.DELIVERED, f"customer already exists: {message}", response.status_code)
        if response.status_code == 400 or (response.status_code == 422 and "partner" in lowered):
            # Partnero's answers for an invalid or absent partner: the sign-up is simply not a referral
            return Outcome(Result.SKIPPED, f"not referred: {message}", response.status_code)
        return _classify_failure(response, message)

    async def customer_exists(self, key: str) -> bool | Outcome:
        try:
            response = await self._request("GET", f"/customers/{path_segment(key)}")
        except _UNANSWERED as exc:
            return Outcome(Result.RETRY, f"look-up failed: {_unanswered(exc)[0]}", None)
        if response.status_code == 404:
            return False
        if not response.is_success:
            return _classify_failure(response, _message(response))
        return True

    async def delete_transaction(self, key: str, maybe_sent_before: bool) -> Outcome:
        response_or_outcome = await self._send("DELETE", f"/transactions/{path_segment(key)}", None)
        if isinstance(response_or_outcome, Outcome):
            return response_or_outcome
        response = response_or_outcome
        if response.is_success:
            return Outcome(Result.DELIVERED, "deleted", response.status_code)
        message = _message(response)
        if response.status_code == 404:
            if maybe_sent_before:
                return Outcome(Result.DELIVERED, "already deleted by an earlier attempt", 404)
            return Outcome(Result.SKIPPED, f"transaction not found at Partnero: {message}", 404)
        return _classify_failure(response, message)

    async def transaction_exists(self, key: str) -> bool | Outcome:
        """True/False when Partnero answered the look-up, else the outcome to retry on.

        `?key=` is the list's only documented filter, and not documented as exact: the key is matched
        exactly in what comes back, and when the answer shows the filter was ignored (other keys in it)
        the pages are read on, up to a bound, then the documented single get decides."""
        for page in range(1, LOOKUP_MAX_PAGES + 1):
            document = await self._look("/transactions", {"key": key, "limit": LOOKUP_PAGE_SIZE, "page": page})
            if not isinstance(document, dict):
                return document
            data = document.get("data")
            items = [i for i in (data if isinstance(data, list) else [data]) if isinstance(i, dict)]
            if any(_is_live(i, key) for i in items):
                return True
            filtered = all(i.get("key") == key for i in items)
            if filtered or not _has_next_page(document, page):
                return False
        document = await self._look(f"/transactions/{path_segment(key)}", {})
        return _is_live(document.get("data"), key) if isinstance(document, dict) else document

    async def promotion_codes(self) -> list[dict[str, Any]] | Outcome:
        """Every promotion code of the program (`GET /promotion-codes`, paged), or the outcome to retry on."""
        codes: list[dict[str, Any]] = []
        for page in range(1, PROMOTION_CODE_MAX_PAGES + 1):
            document = await self._look("/promotion-codes", {"limit": LOOKUP_PAGE_SIZE, "page": page})
            if isinstance(document, Outcome):
                return document
            if not isinstance(document, dict):
                return codes
            data = document.get("data")
            items = [i for i in data if isinstance(i, dict)] if isinstance(data, list) else []
            codes += items
            if len(items) < LOOKUP_PAGE_SIZE and not _has_next_page(document, page):
                break
        return codes

    async def promotion_code(self, code: str) -> dict[str, Any] | Outcome | None:
        """One promotion code (`GET /promotion-codes/{code}`), None when Partnero does not know it."""
        document = await self._look(f"/promotion-codes/{quote(code, safe='')}", {})
        if isinstance(document, Outcome):
            return document
        data = document.get("data") if isinstance(document, dict) else None
        return data if isinstance(data, dict) else None

    async def _look(self, path: str, params: dict[str, Any]) -> dict[str, Any] | bool | Outcome:
        """A look-up's JSON document; False for a 404; the outcome to retry on when there is no answer."""
        try:
            response = await self._request("GET", path, params)
        except _UNANSWERED as exc:
            return Outcome(Result.RETRY, f"look-up failed: {_unanswered(exc)[0]}", None)
        if response.status_code == 404:
            return False
        if not response.is_success:
            return _classify_failure(response, _message(response))
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            return Outcome(Result.RETRY, "look-up answer is not a JSON object", response.status_code)
        return document

    async def find_partner(self, email: str) -> dict[str, Any] | Outcome | None:
        """The program's partner with this email (case-insensitive), None, or the outcome of a failure."""
        document = await self._look("/partners", {"email": email})
        if isinstance(document, Outcome):
            return document
        if not isinstance(document, dict):
            return None  # a 404: no such partner
        data = document.get("data")
        wanted = email.strip().lower()
        items = [i for i in (data if isinstance(data, list) else [data]) if isinstance(i, dict)]
        return next((i for i in items if str(i.get("email", "")).lower() == wanted), None)

    async def create_partner(self, body: dict[str, Any]) -> Outcome:
        """POST /partners; an email Partnero already has is reported as delivered (the partner exists)."""
        answer = await self._send("POST", "/partners", body)
        if isinstance(answer, Outcome):
            return answer
        message = "" if answer.is_success else _message(answer)
        taken = answer.status_code in (409, 422) and any(word in message.lower() for word in ("taken", "exist"))
        if answer.is_success or taken:
            detail = f"partner already exists: {message}" if taken else "partner created"
            return Outcome(Result.DELIVERED, detail, answer.status_code)
        return _classify_failure(answer, message)

    async def check(self) -> Outcome:
        try:
            response = await self._request("GET", "/test")
        except _UNANSWERED as exc:
            return Outcome(Result.RETRY, f"unreachable: {_unanswered(exc)[0]}")
        if response.is_success:
            return Outcome(Result.DELIVERED, "ok", response.status_code)
        return _classify_failure(response, _message(response))

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> Answer | Outcome:
        content = encode_json(body) if body is not None else None
        try:
            return await self._request(method, path, content=content)
        except _UNANSWERED as exc:
            kind, maybe_sent = _unanswered(exc)
            if not maybe_sent:
                # nothing left this process: safe to send again without a look-up
                return Outcome(Result.RETRY, f"cannot connect: {kind}")
            return Outcome(Result.RETRY, f"no answer: {kind}", maybe_sent=True)


# what a request that got no answer raises: aiohttp's own errors, and the timeouts it raises as TimeoutError
_UNANSWERED = (aiohttp.ClientError, TimeoutError)


def _unanswered(exc: BaseException) -> tuple[str, bool]:
    """What kind of failure left a request unanswered, and whether the request may have reached Partnero.

    Only a failure before the request was written — no connection made, no pool slot or connection in
    time — is "not sent" and may be resent without a look-up. Anything else (a read timeout, a reset or
    a close after writing, a malformed answer, an error nobody classified) may have been received and
    committed by Partnero, which does not de-duplicate: the next attempt must look the key up first. The
    kinds keep the names operators have seen in attempt details (httpx's), and the order matters: the
    connect errors are subclasses of the general ones below them."""
    if isinstance(exc, aiohttp.ClientConnectorError):  # no connection was made: nothing was sent
        return "ConnectError", False
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # no pool slot or no connection in time: nothing was sent
        return "ConnectTimeout", False
    if isinstance(exc, (aiohttp.SocketTimeoutError, TimeoutError)):  # sent, no answer in time
        return "ReadTimeout", True
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
        return "ReadError", True
    return "RemoteProtocolError", True  # anything else: the request may have reached Partnero


def _is_live(item: object, key: str) -> bool:
    return isinstance(item, dict) and item.get("key") == key and not item.get("deleted_at")


def _has_next_page(document: dict[str, Any], page: int) -> bool:
    """Partnero pages the Laravel way: `links.next`, and `meta.last_page`."""
    links = document.get("links")
    if isinstance(links, dict) and links.get("next"):
        return True
    meta = document.get("meta")
    last = meta.get("last_page") if isinstance(meta, dict) else None
    return isinstance(last, int) and last > page


def path_segment(value: str) -> str:
    """`value` as exactly one URL path segment, whatever it holds.

    Reserved characters are percent-encoded; so are the dots of a segment that is only dots, which URL
    libraries (httpx, yarl) would otherwise resolve (RFC 3986): `/customers/..` became `GET /v1`, whose 2xx
    then counted as "the customer exists".
    """
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if encoded and not encoded.strip(".") else encoded


def _classify_failure(response: Answer, message: str) -> Outcome:
    code = response.status_code
    if code == 429:
        return Outcome(Result.RETRY, f"rate limited: {message}", code, _retry_after(response))
    if code >= 500 or code == 408:
        # 503 says the request was not taken on; any other 5xx may come after Partnero committed
        maybe_sent = code != 503
        return Outcome(Result.RETRY, f"Partnero error {code}: {message}", code, _retry_after(response), maybe_sent)
    return Outcome(Result.DEAD, f"rejected {code}: {message}", code)


def _retry_after(response: Answer) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))  # delay-seconds form
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _message(response: Answer) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return response.text[:200]


# one encoder for every body: `json.dumps` with separators builds a new one per call
_ENCODER = json.JSONEncoder(separators=(",", ":"))
# unguessable and never sent, so a customer-supplied string can never be mistaken for a placeholder
_SALT = secrets.token_hex(16)


def encode_json(body: dict[str, Any]) -> bytes:
    """JSON with `Decimal` rendered as an exact JSON number (json.dumps would need a float on the way)."""
    numbers: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Decimal):
            numbers.append(format(value, "f"))
            return f"__decimal_{_SALT}_{len(numbers) - 1}__"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = _ENCODER.encode(swap(body))
    for index, number in enumerate(numbers):
        text = text.replace(f'"__decimal_{_SALT}_{index}__"', number, 1)
    return text.encode()
