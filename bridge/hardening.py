"""Small HTTP-side protections shared by every route: `nosniff` on each answer, quiet client disconnects."""

from __future__ import annotations

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
