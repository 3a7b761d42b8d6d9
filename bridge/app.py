"""The HTTP side: `POST /webhooks/{endpoint}` ingest (bridge/ingest.py) in front of the sign-up relay,
the checkout script, health, readiness and the mounted console."""

from __future__ import annotations

import hmac
import logging
import time

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bridge.checkout import render_script
from bridge.config import Config
from bridge.console import mounted_routes
from bridge.delivery import Worker
from bridge.hardening import NoSniff, bearer_token, client_disconnected
from bridge.ingest import BodyTooLarge, WebhookIngest, read_body
from bridge.metrics import record_ingest
from bridge.signups import SIGNUP_ENDPOINT, SignupRequest, first_error
from bridge.store.base import Store
from providers.base import body_hash

log = logging.getLogger("bridge.app")


def create_app(config: Config, store: Store, worker: Worker | None) -> ASGIApp:
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
            body = await read_body(request.receive, request.headers.get("content-length"), config.server.max_body_bytes)
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

    rest = Starlette(
        routes=[
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
    return WebhookIngest(config, store, worker, rest)


def _answer(status: int, reason: str, endpoint: str, started: float) -> Response:
    # the access log line: no query string (it may hold a token), no body, no headers
    elapsed = time.perf_counter() - started
    record_ingest(endpoint, status, reason, elapsed)
    log.info("webhook %s -> %s %s (%.1f ms)", endpoint, status, reason, elapsed * 1000)
    if status == 200:
        return JSONResponse({"status": reason})
    return PlainTextResponse(reason, status_code=status)
