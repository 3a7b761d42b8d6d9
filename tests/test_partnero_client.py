"""The Partnero client (bridge/partnero.py): its URLs, and what may be resent without a look-up.

A key is always exactly one path segment. Only a request that never left may be resent blind; anything
that may have reached Partnero must be reported `maybe_sent`, or the next attempt could pay twice."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from bridge.partnero import Answer, PartneroClient, Result, _unanswered, path_segment
from tests.bridge_process import free_port
from tests.partnero_server import PartneroServer

SALE = {"key": "t:1", "amount": Decimal("10.00"), "amount_units": "usd", "customer": {"key": "c1"}}


@pytest.mark.parametrize(
    ("key", "segment"),
    [(".", "%2E"), ("..", "%2E%2E"), ("...", "%2E%2E%2E"), ("a.b", "a.b"), ("a/../b", "a%2F..%2Fb"), ("", "")],
)
def test_a_key_is_one_path_segment(key: str, segment: str) -> None:
    assert path_segment(key) == segment


def test_dot_keys_reach_their_own_customer_url(partnero: PartneroServer) -> None:
    partnero.add_partner("p1")

    async def run() -> tuple[bool | object, bool | object]:
        client = PartneroClient(partnero.url, partnero.api_key, 5)
        try:
            assert (await client.create_customer({"key": ".", "partner": {"key": "p1"}})).detail == "customer created"
            return await client.customer_exists("."), await client.customer_exists("..")
        finally:
            await client.aclose()

    exists_dot, exists_dotdot = asyncio.run(run())
    assert exists_dot is True
    assert exists_dotdot is False
    paths = [r.path for r in partnero.requests if r.method == "GET"]
    assert paths == ["/v1/customers/.", "/v1/customers/.."]


def test_requests_carry_the_key_the_agent_and_exactly_encoded_queries(partnero: PartneroServer) -> None:
    async def run() -> bool | object:
        client = PartneroClient(partnero.url + "/", partnero.api_key, 5)
        try:
            return await client.transaction_exists("a b/c?&=%~é")
        finally:
            await client.aclose()

    assert asyncio.run(run()) is False
    (request,) = partnero.requests
    assert request.path == "/v1/transactions"
    # as httpx encoded it (form encoding), so a Partnero that matched on it before still does
    assert request.query == "key=a+b%2Fc%3F%26%3D%25~%C3%A9&limit=100&page=1"
    assert request.headers["authorization"] == f"Bearer {partnero.api_key}"
    assert request.headers["user-agent"] == "partnero-bridge"
    assert request.headers["accept"] == "application/json"


def test_a_refused_connection_is_resent_without_a_look_up() -> None:
    async def go() -> None:
        client = PartneroClient(f"http://127.0.0.1:{free_port()}/v1", "k", 2.0)
        try:
            outcome = await client.create_transaction(dict(SALE))
            looked = await client.transaction_exists("t:1")
        finally:
            await client.aclose()
        assert (outcome.result, outcome.maybe_sent) == (Result.RETRY, False)
        assert outcome.detail == "cannot connect: ConnectError"
        assert not isinstance(looked, bool)
        assert (looked.result, looked.detail) == (Result.RETRY, "look-up failed: ConnectError")

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


def test_no_pool_slot_in_time_was_not_sent() -> None:
    """The one connection is taken by a request Partnero never answers: the next request waits for a slot,
    gives up, and has sent nothing."""

    async def go() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader.read(-1)  # never answers; reads until the client hangs up
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = PartneroClient(f"http://127.0.0.1:{port}/v1", "k", 5.0, max_connections=1)
        # a pool wait shorter than the read, so the second request's wait ends while the first still waits
        client._timeout = aiohttp.ClientTimeout(total=None, connect=0.3, sock_connect=0.3, sock_read=3.0)
        try:
            first = asyncio.create_task(client.create_transaction(dict(SALE)))
            await asyncio.sleep(0.1)
            waited = await client.create_transaction({**SALE, "key": "t:2"})
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
        finally:
            await client.aclose()
            server.close()
        assert (waited.result, waited.maybe_sent, waited.detail) == (
            Result.RETRY,
            False,
            "cannot connect: ConnectTimeout",
        )

    asyncio.run(go())


def _connector_error() -> aiohttp.ClientConnectorError:
    return aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None), OSError(111, "refused")
    )


# every kind of failure aiohttp raises for a request without an answer, and what the client concludes:
# only the failures before the request was written are "not sent"
UNANSWERED: list[tuple[BaseException, str, bool]] = [
    (_connector_error(), "ConnectError", False),
    (aiohttp.ConnectionTimeoutError(), "ConnectTimeout", False),
    (aiohttp.SocketTimeoutError(), "ReadTimeout", True),
    (TimeoutError(), "ReadTimeout", True),
    (aiohttp.ServerDisconnectedError(), "ReadError", True),
    (aiohttp.ClientPayloadError("cut short"), "ReadError", True),
    (aiohttp.ClientOSError(104, "reset"), "ReadError", True),
    (aiohttp.ClientConnectionResetError(), "RemoteProtocolError", True),
    (aiohttp.ServerTimeoutError(), "ReadTimeout", True),
    (aiohttp.ClientError(), "RemoteProtocolError", True),
]


@pytest.mark.parametrize(("error", "kind", "maybe_sent"), UNANSWERED, ids=[type(e).__name__ for e, _, _ in UNANSWERED])
def test_each_unanswered_request_is_classified(error: BaseException, kind: str, maybe_sent: bool) -> None:
    assert _unanswered(error) == (kind, maybe_sent)

    async def go() -> tuple[Any, Any]:
        client = PartneroClient("http://127.0.0.1:1/v1", "k", 1.0)

        async def fail(*args: object, **kwargs: object) -> Answer:
            raise error

        client._request = fail  # type: ignore[method-assign]
        return await client.create_transaction(dict(SALE)), await client.customer_exists("c1")

    sent, looked = asyncio.run(go())
    assert (sent.result, sent.maybe_sent) == (Result.RETRY, maybe_sent)
    assert sent.detail == (f"no answer: {kind}" if maybe_sent else f"cannot connect: {kind}")
    assert (looked.result, looked.detail) == (Result.RETRY, f"look-up failed: {kind}")


def test_an_answer_that_is_not_json_is_described_by_its_text() -> None:
    from bridge.partnero import _classify_failure, _message, _retry_after

    answer = Answer(
        503, CIMultiDict({"Retry-After": "7"}), "Überlastet".encode("latin-1"), "Service Unavailable", "latin-1"
    )
    assert _message(answer) == "Überlastet"
    assert _retry_after(answer) == 7.0
    outcome = _classify_failure(answer, _message(answer))
    assert (outcome.result, outcome.maybe_sent, outcome.retry_after) == (Result.RETRY, False, 7.0)
    assert _message(Answer(500, {}, b"", "Internal Server Error")) == "Internal Server Error"


def test_decimals_are_sent_as_exact_numbers_and_strings_stay_strings() -> None:
    import json

    from bridge.partnero import encode_json

    many = [Decimal(n) for n in range(12)]  # placeholder 1 must not match inside placeholder 10
    lookalike = "__decimal_0123456789abcdef_0__"
    body = {"amount": Decimal("8.10"), "big": Decimal("1E+2"), "n": many, "customer": {"key": lookalike}}
    text = encode_json(body).decode()
    assert '"amount":8.10' in text
    assert '"big":100' in text
    assert json.loads(text, parse_float=Decimal) == {
        "amount": Decimal("8.10"),
        "big": 100,
        "n": list(range(12)),
        "customer": {"key": lookalike},
    }
