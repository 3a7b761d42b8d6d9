"""`POST /webhooks/{endpoint}`: the ingest story, as a plain ASGI app in front of the rest.

find the endpoint → read the body within the limit → verify the signature → store the call durably →
answer 200 and wake the worker. Parsing and delivery happen later, in the worker, on the stored call.

This is the one path a provider's burst goes through, so it speaks ASGI directly: Starlette's request,
response, routing and middleware layers cost more CPU per webhook than verifying and storing it
(docs/performance.md). Everything else — other methods on this path, other paths — goes on to the app
behind it, so their answers (405, 404, redirects) stay Starlette's.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qsl, urlencode

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.config import Config, Endpoint
from bridge.delivery import Worker
from bridge.hardening import safe_delivery_id
from bridge.metrics import record_ingest
from bridge.store.base import Store
from providers.base import AcknowledgeOnly, SignatureError, WebhookRequest, body_hash

log = logging.getLogger("bridge.app")

PREFIX = "/webhooks/"
# never stored: they carry credentials (Gumroad's Basic auth) or the caller's session
_UNSTORED_HEADERS = {"authorization", "cookie", "proxy-authorization"}
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_STATUS_BODIES = {reason: b'{"status":"%s"}' % reason.encode() for reason in ("stored", "duplicate")}


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The raw body, refusing past `limit` bytes without buffering the rest.

    `declared` is the request's Content-Length, if it sent one.
    """
    # a length with more digits than any body we take is too large without converting it
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 12 or int(declared) > limit)
    ):
        raise BodyTooLarge
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def stored_query(query_string: str, secrets: tuple[str, ...]) -> str:
    """The query string with any parameter equal to a configured secret (Gumroad's `?token=`) redacted."""
    if not query_string:
        return ""
    pairs = parse_qsl(query_string, keep_blank_values=True)
    return urlencode([(k, "[redacted]" if v in secrets else v) for k, v in pairs])


class WebhookIngest:
    """The ASGI app for `POST /webhooks/{endpoint}`; every other request goes on to `app`."""

    def __init__(self, config: Config, store: Store, worker: Worker | None, app: ASGIApp) -> None:
        self.config = config
        self.store = store
        self.worker = worker
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        name = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
        # `{endpoint}` is one non-empty segment, as Starlette's route would have it
        if not name or "/" in name:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _refuse_method(send)
            return
        started = time.perf_counter()
        endpoint = self.config.endpoints.get(name)
        if endpoint is None:
            status, reason = 404, "unknown endpoint"
        elif self.worker is None:
            status, reason = await self._ingest(scope, receive, endpoint)
        else:
            with self.worker.answering():
                status, reason = await self._ingest(scope, receive, endpoint)
        await _answer(send, status, reason, name, started)

    async def _ingest(self, scope: Scope, receive: Receive, endpoint: Endpoint) -> tuple[int, str]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.config.server.max_body_bytes
        try:
            body = await read_body(receive, headers.get("content-length"), limit)
        except BodyTooLarge:
            return 413, f"body over {limit} bytes"
        except ClientDisconnect:
            # nothing was stored; the answer below goes nowhere, it only ends the request cleanly
            return 400, "client disconnected before the body arrived; nothing stored"
        webhook = WebhookRequest(
            method="POST",
            path=_url_path(scope),
            headers=headers,
            body=body,
            query_string=scope.get("query_string", b"").decode("latin-1"),
        )
        try:
            await endpoint.adapter.authenticate(webhook, time.time())
        except SignatureError as exc:
            return 401, str(exc)
        except AcknowledgeOnly as exc:
            return 200, f"acknowledged: {exc}"
        duplicate = await self._store(endpoint, webhook)
        if duplicate is None:
            # the provider must try again: 503 is a retry signal everywhere (Gumroad retries no 4xx)
            return 503, "storage unavailable, retry later"
        if self.worker is not None and not duplicate:
            self.worker.wake()
        return 200, "duplicate" if duplicate else "stored"

    async def _store(self, endpoint: Endpoint, webhook: WebhookRequest) -> bool | None:
        try:
            delivery_id = safe_delivery_id(endpoint.adapter.delivery_id(webhook))
        except Exception:
            delivery_id = body_hash(webhook.body)
        headers = {k: v for k, v in webhook.headers.items() if k not in _UNSTORED_HEADERS}
        query = stored_query(webhook.query_string, endpoint.adapter.secrets)
        received_at = time.time()
        try:
            _, is_new = await self.store.run(
                lambda tx: tx.insert_call(
                    endpoint.name,
                    delivery_id,
                    received_at,
                    webhook.method,
                    webhook.path,
                    query,
                    headers,
                    webhook.body,
                ),
                urgent=True,  # the provider waits on this answer; recording and delivery can wait
            )
        except Exception:
            log.exception("storing a call for %s failed", endpoint.name)
            return None
        return not is_new


def _url_path(scope: Scope) -> str:
    # the path as Starlette's `request.url.path` gives it, which is what earlier calls were stored with
    path: str = scope["path"]
    if "?" in path or "#" in path or "\\" in path:
        path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return path


def _json_status(reason: str) -> bytes:
    return json.dumps({"status": reason}, ensure_ascii=False, separators=(",", ":")).encode()


async def _refuse_method(send: Send) -> None:
    body = b"Method Not Allowed"
    headers = [(b"allow", b"POST"), (b"content-length", b"%d" % len(body)), _TEXT, _NOSNIFF]
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, reason: str, endpoint: str, started: float) -> None:
    # the access log line: no query string (it may hold a token), no body, no headers
    elapsed = time.perf_counter() - started
    record_ingest(endpoint, status, reason, elapsed)
    log.info("webhook %s -> %s %s (%.1f ms)", endpoint, status, reason, elapsed * 1000)
    if status == 200:
        body = (
            _STATUS_BODIES.get(reason)
            or json.dumps({"status": reason}, ensure_ascii=False, separators=(",", ":")).encode()
        )
        content_type = _JSON
    else:
        body = reason.encode()
        content_type = _TEXT
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"%d" % len(body)), content_type, _NOSNIFF],
        }
    )
    await send({"type": "http.response.body", "body": body})
