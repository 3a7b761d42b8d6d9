"""The two baselines bench/compare.py drives beside the bridge, served by uvicorn like the bridge is.

- `bare`: reads the body and answers 200 — the ceiling of uvicorn + Starlette on this machine.
- `naive`: what an in-request integration does — verify the Lemon Squeezy signature, then post the sale
  to Partnero and answer only when Partnero has answered. `BENCH_SECRET` and `BENCH_PARTNERO_URL` say
  where; one pooled httpx client with 64 connections, as such a handler would have.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from decimal import Decimal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bridge.partnero import encode_json


async def _bare(request: Request) -> Response:
    await request.body()
    return PlainTextResponse("ok")


bare = Starlette(routes=[Route("/webhooks/{endpoint}", _bare, methods=["POST"])])

_client: httpx.AsyncClient | None = None


def _partnero() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(
            base_url=os.environ["BENCH_PARTNERO_URL"],
            headers={"Authorization": "Bearer test-partnero-key"},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            timeout=30,
        )
    return _client


async def _naive(request: Request) -> Response:
    body = await request.body()
    expected = hmac.new(os.environ["BENCH_SECRET"].encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), request.headers.get("x-signature", "").encode()):
        return PlainTextResponse("bad signature", status_code=401)
    payload = json.loads(body)
    attributes = payload["data"]["attributes"]
    sale = {
        "key": f"lemonsqueezy:order:{payload['data']['id']}",
        "customer": {"key": payload["meta"]["custom_data"]["user_id"]},
        "amount": Decimal(attributes["subtotal"] - attributes["discount_total"]).scaleb(-2),
        "amount_units": "usd",
        "action": "sale",
    }
    answer = await _partnero().post(
        "/transactions", content=encode_json(sale), headers={"Content-Type": "application/json"}
    )
    return PlainTextResponse(
        "ok" if answer.is_success else "partnero failed", status_code=200 if answer.is_success else 502
    )


naive = Starlette(routes=[Route("/webhooks/{endpoint}", _naive, methods=["POST"])])
