"""The HTTP side: `POST /webhooks/{endpoint}` ingest, health and readiness.

The ingest handler reads as the whole story: find the endpoint → read the body within the limit →
verify the signature → store the call durably → answer 200 and wake the worker. Parsing and delivery
happen later, in the worker, on the stored call.
"""

from __future__ import annotations

import hmac
import logging
import time
from urllib.parse import parse_qsl, urlencode

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bridge.checkout import render_script
from bridge.config import Config, Endpoint
from bridge.console import mounted_routes
from bridge.delivery import Worker
from bridge.hardening import NoSniff, bearer_token, client_disconnected, safe_delivery_id
from bridge.metrics import record_ingest
from bridge.signups import SIGNUP_ENDPOINT, SignupRequest, first_error
from bridge.store.base import Store
from providers.base import AcknowledgeOnly, SignatureError, WebhookRequest, body_hash

log = logging.getLogger("bridge.app")

# never stored: they carry credentials (Gumroad's Basic auth) or the caller's session
_UNSTORED_HEADERS = {"authorization", "cookie", "proxy-authorization"}


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing past `limit` bytes without buffering the rest."""
    declared = request.headers.get("content-length")
    # a length with more digits than any body we take is too large without converting it
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 12 or int(declared) > limit)
    ):
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def stored_query(query_string: str, secrets: tuple[str, ...]) -> str:
    """The query string with any parameter equal to a configured secret (Gumroad's `?token=`) redacted."""
    pairs = parse_qsl(query_string, keep_blank_values=True)
    return urlencode([(k, "[redacted]" if v in secrets else v) for k, v in pairs])


def create_app(config: Config, store: Store, worker: Worker | None) -> Starlette:
    async def ingest(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["endpoint"]
        endpoint = config.endpoints.get(name)
        if endpoint is None:
            return _answer(404, "unknown endpoint", name, started)
        if worker is None:
            return await _ingest(request, endpoint, started)
        with worker.answering():
            return await _ingest(request, endpoint, started)

    async def _ingest(request: Request, endpoint: Endpoint, started: float) -> Response:
        name = endpoint.name
        try:
            body = await read_body(request, config.server.max_body_bytes)
        except BodyTooLarge:
            return _answer(413, f"body over {config.server.max_body_bytes} bytes", name, started)
        webhook = WebhookRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            query_string=request.url.query,
        )
        try:
            await endpoint.adapter.authenticate(webhook, time.time())
        except SignatureError as exc:
            return _answer(401, str(exc), name, started)
        except AcknowledgeOnly as exc:
            return _answer(200, f"acknowledged: {exc}", name, started)
        duplicate = await _store(endpoint, webhook)
        if duplicate is None:
            # the provider must try again: 503 is a retry signal everywhere (Gumroad retries no 4xx)
            return _answer(503, "storage unavailable, retry later", name, started)
        if worker is not None and not duplicate:
            worker.wake()
        return _answer(200, "duplicate" if duplicate else "stored", name, started)

    async def _store(endpoint: Endpoint, webhook: WebhookRequest) -> bool | None:
        try:
            delivery_id = safe_delivery_id(endpoint.adapter.delivery_id(webhook))
        except Exception:
            delivery_id = body_hash(webhook.body)
        headers = {k: v for k, v in webhook.headers.items() if k not in _UNSTORED_HEADERS}
        query = stored_query(webhook.query_string, endpoint.adapter.secrets)
        received_at = time.time()
        try:
            _, is_new = await store.run(
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

    async def signup(request: Request) -> Response:
        """The sign-up relay: bearer token → body within the limit → validated → stored → 202."""
        started = time.perf_counter()
        settings = config.signups
        if not settings.enabled:
            return _answer(404, "the sign-up relay is not enabled (signups.token)", "signups", started)
        given = bearer_token(request.headers.get("authorization", ""))
        if given is None or not hmac.compare_digest(given.encode(), settings.token.encode()):
            return _answer(401, "missing or wrong bearer token", "signups", started)
        try:
            body = await read_body(request, config.server.max_body_bytes)
        except BodyTooLarge:
            return _answer(413, f"body over {config.server.max_body_bytes} bytes", "signups", started)
        try:
            SignupRequest.model_validate_json(body)
        except ValidationError as exc:
            where, message = first_error(exc)
            log.info("signups -> 422 %s", where)
            return JSONResponse({"error": message, "field": where}, status_code=422)
        received_at = time.time()
        try:
            await store.run(
                lambda tx: tx.insert_call(
                    SIGNUP_ENDPOINT, body_hash(body), received_at, "POST", "/signups", "", {}, body
                ),
                urgent=True,
            )
        except Exception:
            log.exception("storing a sign-up failed")
            return _answer(503, "storage unavailable, retry later", "signups", started)
        if worker is not None:
            worker.wake()
        log.info("signups -> 202 (%.1f ms)", (time.perf_counter() - started) * 1000)
        return JSONResponse({"status": "accepted"}, status_code=202)

    async def checkout_script(request: Request) -> Response:
        return Response(
            render_script(),
            media_type="application/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if await store.ping():
            return PlainTextResponse("ready")
        return PlainTextResponse("store unreachable", status_code=503)

    return Starlette(
        routes=[
            Route("/webhooks/{endpoint}", ingest, methods=["POST"]),
            Route("/signups", signup, methods=["POST"]),
            Route("/partnero-checkout.js", checkout_script, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            # the console and /metrics, unless `admin.token` is empty or the console has its own listener
            *mounted_routes(config, store, worker),
        ],
        middleware=[Middleware(NoSniff)],
        exception_handlers={ClientDisconnect: client_disconnected},
    )


def _answer(status: int, reason: str, endpoint: str, started: float) -> Response:
    # the access log line: no query string (it may hold a token), no body, no headers
    elapsed = time.perf_counter() - started
    record_ingest(endpoint, status, reason, elapsed)
    log.info("webhook %s -> %s %s (%.1f ms)", endpoint, status, reason, elapsed * 1000)
    if status == 200:
        return JSONResponse({"status": reason})
    return PlainTextResponse(reason, status_code=status)
