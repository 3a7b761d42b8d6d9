"""Small ingest-side protections: `nosniff` on each answer, quiet client disconnects, storable delivery ids."""

from __future__ import annotations

import hashlib
import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bridge.app")


class NoSniff:
    """Adds `X-Content-Type-Options: nosniff`: a browser never reads a plain-text answer as script or HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-content-type-options"]
                message = {**message, "headers": [*headers, (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_with_header)


async def client_disconnected(request: Request, exc: Exception) -> Response:
    """The client left before its body arrived (or the server closed a stalled one): one line, no traceback.

    Nothing was stored; the answer below goes nowhere, it only ends the request cleanly.
    """
    log.info(
        "%s %s -> client disconnected before the body arrived; nothing stored", request.method, request.url.path[:80]
    )
    return PlainTextResponse("client disconnected", status_code=400)


# longer ids are hashed: every provider's id is far shorter, and the store indexes this column
MAX_DELIVERY_ID_CHARS = 200


def safe_delivery_id(delivery_id: str) -> str:
    """The id the store keeps for inbound dedup: `delivery_id` itself when it is plain text, else its hash.

    A body-derived id may hold what a store cannot take (PostgreSQL refuses NUL in text, SQLite a lone
    surrogate): stored as is, ingest would answer 503 on every retry. Hashing keeps dedup exact, since
    the same id always hashes the same.
    """
    # isprintable() is False for NUL, control characters and surrogates alike
    if len(delivery_id) <= MAX_DELIVERY_ID_CHARS and delivery_id.isprintable() and delivery_id.strip():
        return delivery_id
    digest = hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"id-sha256:{digest}"


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme in any case, RFC 9110), else None.

    A bare token without the scheme is not accepted: the relay's token is only ever sent as a bearer.
    """
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
