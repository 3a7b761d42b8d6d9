"""The Partnero client over aiohttp (bridge/aiohttp_transport.py): what may be resent without a look-up.

Only a request that never left may be resent blind; anything that may have reached Partnero must be
reported `maybe_sent`, or the next attempt could pay twice."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from bridge.partnero import PartneroClient, Result
from tests.bridge_process import free_port
from tests.partnero_server import PartneroServer

SALE = {"key": "t:1", "amount": Decimal("10.00"), "amount_units": "usd", "customer": {"key": "c1"}}


def test_a_refused_connection_is_resent_without_a_look_up() -> None:
    async def go() -> None:
        client = PartneroClient(f"http://127.0.0.1:{free_port()}/v1", "k", 2.0)
        try:
            outcome = await client.create_transaction(dict(SALE))
        finally:
            await client.aclose()
        assert (outcome.result, outcome.maybe_sent) == (Result.RETRY, False)
        assert outcome.detail == "cannot connect: ConnectError"

    asyncio.run(go())


def test_a_broken_or_timed_out_answer_may_have_been_sent(partnero: PartneroServer) -> None:
    partnero.add_customer("c1")

    async def go() -> None:
        client = PartneroClient(partnero.url, partnero.api_key, 0.5)
        try:
            partnero.break_next(1, commit=True)
            broken = await client.create_transaction(dict(SALE))
            partnero.hang_next(1, seconds=1.5, commit=True)
            hung = await client.create_transaction({**SALE, "key": "t:2"})
            delivered = await client.create_transaction({**SALE, "key": "t:3"})
        finally:
            await client.aclose()
        assert (broken.result, broken.maybe_sent) == (Result.RETRY, True)
        assert (hung.result, hung.maybe_sent, hung.detail) == (Result.RETRY, True, "no answer: ReadTimeout")
        assert (delivered.result, delivered.status_code) == (Result.DELIVERED, 200)

    asyncio.run(go())
    assert sorted(t.key for t in partnero.transactions) == ["t:1", "t:2", "t:3"]
