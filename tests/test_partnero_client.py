"""The Partnero client's URLs: a key is always exactly one path segment (bridge/partnero.py)."""

from __future__ import annotations

import asyncio

import pytest

from bridge.partnero import PartneroClient, path_segment
from tests.partnero_server import PartneroServer


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
