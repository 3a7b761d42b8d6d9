"""The ingest handler in-process: status codes, what is stored, what never is."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config import Config, DeliverySettings, Endpoint, EndpointSettings, PartneroSettings, ServerSettings
from bridge.events import NormalizedEvent
from bridge.ingest import stored_query
from bridge.store.base import Store, StoredCall
from bridge.store.sqlite import SQLiteStore
from providers.base import AcknowledgeOnly, AdapterOptions, ProviderAdapter, SignatureError, WebhookRequest


class HeaderTokenAdapter(ProviderAdapter):
    name: ClassVar[str] = ""

    def verify(self, request: WebhookRequest, now: float) -> None:
        if request.header("x-ping"):
            raise AcknowledgeOnly("creation ping")
        if request.header("x-token") not in self.secrets and request.query.get("token") not in self.secrets:
            raise SignatureError.mismatch("x-token")

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        return []


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, SQLiteStore]]:
    store = SQLiteStore(str(tmp_path / "a.db"))
    settings = EndpointSettings(provider="test", secret="tok-123456")
    endpoint = Endpoint("shop", settings, PartneroSettings(), HeaderTokenAdapter(["tok-123456"], AdapterOptions()))
    config = Config(
        PartneroSettings(), "sqlite://", ServerSettings(max_body_bytes=2048), DeliverySettings(), {"shop": endpoint}
    )
    asyncio.run(store.open())
    with TestClient(create_app(config, store, None)) as test_client:
        yield test_client, store
    asyncio.run(store.close())


def _calls(store: SQLiteStore) -> list[StoredCall]:
    return store.run_sync(lambda tx: tx.received_calls(100))


def test_statuses_and_reasons(client: tuple[TestClient, SQLiteStore]) -> None:
    http, store = client
    assert http.post("/webhooks/nope", content=b"{}").status_code == 404
    bad = http.post("/webhooks/shop", content=b"{}", headers={"x-token": "wrong"})
    assert (bad.status_code, bad.text) == (401, "x-token does not match")
    big = http.post("/webhooks/shop", content=b"x" * 4096, headers={"x-token": "tok-123456"})
    assert big.status_code == 413
    ok = http.post("/webhooks/shop", content=b"{}", headers={"x-token": "tok-123456"})
    assert (ok.status_code, ok.json()) == (200, {"status": "stored"})
    again = http.post("/webhooks/shop", content=b"{}", headers={"x-token": "tok-123456"})
    assert again.json() == {"status": "duplicate"}
    assert len(_calls(store)) == 1


def test_chunked_body_over_the_limit_is_refused_without_a_length(client: tuple[TestClient, SQLiteStore]) -> None:
    http, store = client

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 512

    response = http.post("/webhooks/shop", content=chunks(), headers={"x-token": "tok-123456"})
    assert response.status_code == 413
    assert _calls(store) == []


def test_handshake_is_answered_and_not_stored(client: tuple[TestClient, SQLiteStore]) -> None:
    http, store = client
    response = http.post("/webhooks/shop", content=b"webhook_id=1", headers={"x-ping": "1"})
    assert response.status_code == 200
    assert _calls(store) == []


def test_credentials_are_not_stored(client: tuple[TestClient, SQLiteStore]) -> None:
    http, store = client
    response = http.post(
        "/webhooks/shop?token=tok-123456&ref=a",
        content=b'{"a":1}',
        headers={"authorization": "Basic eDp0b2stMTIzNDU2", "cookie": "s=1", "x-extra": "kept"},
    )
    assert response.status_code == 200
    [call] = _calls(store)
    assert call.query_string == "token=%5Bredacted%5D&ref=a"
    assert "authorization" not in call.headers and "cookie" not in call.headers
    assert call.headers["x-extra"] == "kept"
    assert call.body == b'{"a":1}'
    assert call.received_at <= time.time()


def test_the_webhook_path_answers_as_a_route_would(client: tuple[TestClient, SQLiteStore]) -> None:
    """The webhook path is served below Starlette (bridge/ingest.py); its answers keep a route's shape."""
    http, store = client
    wrong_method = http.get("/webhooks/shop")
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
    assert http.post("/webhooks/shop/extra", content=b"{}", headers={"x-token": "tok-123456"}).status_code == 404
    assert http.post("/webhooks/", content=b"{}").status_code == 404
    acknowledged = http.post("/webhooks/shop", content=b"{}", headers={"x-ping": '1 "quoted"'})
    assert acknowledged.json() == {"status": "acknowledged: creation ping"}
    for response in (
        wrong_method,
        acknowledged,
        http.post("/webhooks/nope", content=b"{}"),
        http.post("/webhooks/shop", content=b"{}", headers={"x-token": "wrong"}),
        http.post("/webhooks/shop", content=b"x" * 4096, headers={"x-token": "tok-123456"}),
        http.post("/webhooks/shop", content=b"{}", headers={"x-token": "tok-123456"}),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["content-type"] == "application/json"
    assert len(_calls(store)) == 1


def test_health_and_readiness(client: tuple[TestClient, SQLiteStore]) -> None:
    http, _ = client
    assert http.get("/healthz").text == "ok"
    assert http.get("/readyz").status_code == 200


def test_stored_query_only_redacts_secrets() -> None:
    assert stored_query("a=1&token=s", ("s",)) == "a=1&token=%5Bredacted%5D"
    assert stored_query("", ("s",)) == ""


class BodyIdAdapter(HeaderTokenAdapter):
    """Takes the delivery id from the body, as adapters do with a payload's event id."""

    def delivery_id(self, request: WebhookRequest) -> str:
        return str(json.loads(request.body)["id"])


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
@pytest.mark.parametrize("raw_id", ["evt\x00nul", "evt\ud800lone", "evt\nline", "e" * 5000, " "])
def test_a_body_derived_delivery_id_is_reduced_to_a_storable_form(engine: str, raw_id: str, tmp_path: Path) -> None:
    from bridge.store.postgres import PostgresStore
    from tests.postgres_kit import throwaway_schema

    async def post_twice(store: Store) -> list[int]:
        settings = EndpointSettings(provider="test", secret="tok-123456")
        endpoint = Endpoint("shop", settings, PartneroSettings(), BodyIdAdapter(["tok-123456"], AdapterOptions()))
        config = Config(PartneroSettings(), "sqlite://", ServerSettings(), DeliverySettings(), {"shop": endpoint})
        body = json.dumps({"id": raw_id}).encode()
        statuses = []
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(config, store, None)), base_url="http://t"
        ) as http:
            for _ in range(2):
                response = await http.post("/webhooks/shop", content=body, headers={"x-token": "tok-123456"})
                statuses.append(response.status_code)
        [call] = await store.run(lambda tx: tx.received_calls(10))
        assert call.delivery_id.startswith("id-sha256:") and len(call.delivery_id) < 100
        return statuses

    async def run(store: Store) -> list[int]:
        await store.open()
        try:
            return await post_twice(store)
        finally:
            await store.close()

    if engine == "sqlite":
        statuses = asyncio.run(run(SQLiteStore(str(tmp_path / "s.db"))))
    else:
        with throwaway_schema() as url:
            statuses = asyncio.run(run(PostgresStore(url, pool_size=2)))
    # stored once, then recognised as the same delivery: never a 503 the provider would retry for ever
    assert statuses == [200, 200]


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[TestClient]:
    from bridge.config import SignupSettings

    store = SQLiteStore(str(tmp_path / "r.db"))
    config = Config(
        PartneroSettings(),
        "sqlite://",
        ServerSettings(),
        DeliverySettings(),
        {},
        signups=SignupSettings(token="relay-token-0123456789"),
    )
    asyncio.run(store.open())
    with TestClient(create_app(config, store, None)) as test_client:
        yield test_client
    asyncio.run(store.close())


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Bearer relay-token-0123456789", 422),
        ("bearer relay-token-0123456789", 422),
        ("BEARER  relay-token-0123456789 ", 422),
        ("relay-token-0123456789", 401),
        ("Basic relay-token-0123456789", 401),
        ("Bearer", 401),
        ("Bearer relay-token-012345678", 401),
    ],
)
def test_signups_take_the_bearer_scheme_in_any_case_and_require_it(
    relay: TestClient, authorization: str, status: int
) -> None:
    # 422: the token was accepted and the (empty) body then refused
    response = relay.post("/signups", content=b"{}", headers={"authorization": authorization})
    assert response.status_code == status


def test_every_answer_says_nosniff(client: tuple[TestClient, SQLiteStore], relay: TestClient) -> None:
    http, _ = client
    answers = [
        http.get("/healthz"),
        http.post("/webhooks/nope", content=b"{}"),
        http.post("/webhooks/shop", content=b"{}", headers={"x-token": "wrong"}),
        http.post("/webhooks/shop", content=b"{}", headers={"x-token": "tok-123456"}),
        http.get("/partnero-checkout.js"),
        relay.post("/signups", content=b"{}"),
    ]
    assert [r.headers.get("x-content-type-options") for r in answers] == ["nosniff"] * len(answers)
