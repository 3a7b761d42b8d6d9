"""The console's rules in-process: who may see and change what, the views' JSON twins, /metrics, alerts."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bridge.alerts import Alert, Alerter
from bridge.app import create_app
from bridge.config import Config, parse_config
from bridge.console import auth
from bridge.console.views import programs
from bridge.store.base import EventFilter
from bridge.store.sqlite import SQLiteStore
from tests.e2e_kit import provider_cases

LS = next(c for c in provider_cases() if c.provider == "lemonsqueezy")
TOKEN = "admin-token-0123456789"
BEARER = {"authorization": f"Bearer {TOKEN}"}
HTML = {"accept": "text/html"}


def make_config(**admin: Any) -> Config:
    return parse_config(
        {
            "admin": {"token": TOKEN, **admin},
            "partnero": {"api_key": "pk", "base_url": "http://127.0.0.1:9/v1", "dry_run": True},
            "endpoints": {"shop": LS.endpoint_settings},
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "c.db"))
    asyncio.run(s.open())
    yield s


@pytest.fixture
def client(store: SQLiteStore) -> Iterator[TestClient]:
    with TestClient(create_app(make_config(), store, None), base_url="http://bridge.test") as c:
        yield c


def paused(store: SQLiteStore) -> dict[str, float]:
    return asyncio.run(store.run(lambda tx: tx.paused_programs()))


def scope() -> str:
    [program] = programs(make_config())
    return program


def login(client: TestClient) -> None:
    answer = client.post(
        "/admin/login",
        data={"token": TOKEN, "next": "/admin/events"},
        headers={"origin": "http://bridge.test"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/events"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie


def test_without_a_token_the_console_is_off(store: SQLiteStore) -> None:
    config = parse_config({"endpoints": {"shop": LS.endpoint_settings}})
    with TestClient(create_app(config, store, None)) as c:
        assert c.get("/admin", headers=BEARER).status_code == 404
        assert c.get("/metrics", headers=BEARER).status_code == 404


def test_pages_need_the_token_and_a_wrong_bearer_is_never_a_redirect(client: TestClient) -> None:
    assert client.get("/admin/events").status_code == 401
    to_login = client.get("/admin/events?q=x", headers=HTML, follow_redirects=False)
    assert to_login.status_code == 303 and to_login.headers["location"] == "/admin/login?next=%2Fadmin%2Fevents%3Fq%3Dx"
    wrong = client.get("/admin/events", headers={**HTML, "authorization": "Bearer nope"}, follow_redirects=False)
    assert wrong.status_code == 401
    assert client.get("/admin/events", headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.get("/admin/events", headers=BEARER).status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"authorization": "Bearer nope"}).status_code == 401


def test_login_form_sets_a_session_and_refuses_wrong_tokens_and_other_origins(client: TestClient) -> None:
    wrong = client.post("/admin/login", data={"token": "guess"}, headers={"origin": "http://bridge.test"})
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    foreign = client.post("/admin/login", data={"token": TOKEN}, headers={"origin": "http://evil.test"})
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    login(client)
    assert client.get("/admin/events").status_code == 200
    # an open redirect through `next` is not possible
    answer = client.post(
        "/admin/login",
        data={"token": TOKEN, "next": "//evil.test/admin"},
        headers={"origin": "http://bridge.test"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/admin"


def test_state_changes_need_a_session_from_this_origin_or_the_bearer(client: TestClient, store: SQLiteStore) -> None:
    pause = f"/admin/programs/{scope()}/pause"
    assert client.get(pause).status_code == 405  # GET never changes state
    assert client.post(pause).status_code == 401
    login(client)
    assert client.post(pause).status_code == 403  # a session but no Origin
    assert client.post(pause, headers={"origin": "http://evil.test"}).status_code == 403
    assert client.post(pause, headers={"referer": "http://bridge.test:81/admin"}).status_code == 403
    assert paused(store) == {}
    ok = client.post(pause, headers={"origin": "http://bridge.test"}, follow_redirects=False)
    assert ok.status_code == 303 and set(paused(store)) == {scope()}
    client.cookies.clear()
    resumed = client.post(f"/admin/programs/{scope()}/resume?format=json", headers=BEARER)
    assert resumed.json() == {"program": scope(), "paused": False, "changed": True}
    assert paused(store) == {}
    assert client.post("/admin/programs/unknown/pause", headers=BEARER).status_code == 404


def test_a_session_is_signed_by_the_token_and_expires() -> None:
    settings = make_config().admin
    value = auth.session_value(settings, 1000.0)
    assert auth.valid_session(settings, value, 1001.0)
    assert not auth.valid_session(settings, value, 1000.0 + 13 * 3600)
    expires, _ = value.split(".")
    assert not auth.valid_session(settings, f"{int(expires) + 9999}.{value.split('.')[1]}", 1001.0)
    other = make_config().admin.model_copy(update={"token": "another-token-123"})
    assert not auth.valid_session(other, value, 1001.0)


def ingest(client: TestClient, name: str) -> None:
    body, headers, _ = LS.signed(name)
    assert client.post("/webhooks/shop", content=body, headers=headers).status_code == 200


def parse_all(store: SQLiteStore) -> None:
    from bridge.delivery import Worker

    async def run() -> None:
        await Worker(make_config(), store).process_received()

    asyncio.run(run())


def test_search_filters_detail_and_json_twins(client: TestClient, store: SQLiteStore) -> None:
    ingest(client, LS.spec["sale"]["file"])
    parse_all(store)
    sale = LS.spec["sale"]
    [event] = asyncio.run(store.run(lambda tx: tx.list_events(EventFilter())))
    email = event.email
    assert email
    for q in (email.upper(), sale["key"], sale["customer_key"], sale["key"].rsplit(":", 1)[1]):
        rows = client.get("/admin/events", params={"q": q, "format": "json"}, headers=BEARER).json()["rows"]
        assert [r["transaction_key"] for r in rows] == [sale["key"]], q
    assert client.get("/admin/events?q=nobody@example.com&format=json", headers=BEARER).json()["rows"] == []
    assert client.get("/admin/events?kind=refund&format=json", headers=BEARER).json()["rows"] == []
    bad = client.get("/admin/events?since=yesterday-ish", headers=BEARER)
    assert bad.status_code == 400 and "yesterday-ish" in bad.text

    detail = client.get(f"/admin/events/{event.id}?format=json", headers=BEARER).json()["event"]
    assert detail["normalized"]["transaction_key"] == sale["key"]
    assert detail["stored_call"]["headers"]["content-type"] == "application/json"
    assert "x-signature" in detail["stored_call"]["headers"]  # a signature is not a credential
    assert json.loads(detail["stored_call"]["body"])["meta"]["event_name"] == "order_created"
    page = client.get(f"/admin/events/{event.id}", headers=BEARER)
    assert page.status_code == 200 and sale["key"] in page.text
    assert client.get("/admin/events/999", headers=BEARER).status_code == 404

    overview = client.get("/admin?format=json", headers=BEARER).json()
    assert overview["programs"][0]["state"] == "dry run"
    assert [c["endpoint"] for c in overview["charts"]] == ["shop"]
    assert sum(overview["charts"][0]["sales"]) == 1
    html = client.get("/admin", headers=BEARER).text
    assert "<svg" in html and "Sales, refunds and booked amount" in html


def test_credentials_in_stored_headers_are_hidden(client: TestClient, store: SQLiteStore) -> None:
    body, headers, _ = LS.signed(LS.spec["sale"]["file"])
    headers = {**headers, "x-api-token": "tok-live-1", "x-echo": LS.secret}
    client.post("/webhooks/shop", content=body, headers=headers)
    parse_all(store)
    [event] = asyncio.run(store.run(lambda tx: tx.list_events(EventFilter())))
    call = client.get(f"/admin/events/{event.id}?format=json", headers=BEARER).json()["event"]["stored_call"]
    assert "x-api-token" not in call["headers"] and "x-echo" not in call["headers"]
    assert call["hidden_headers"] == ["x-api-token", "x-echo"]
    assert "tok-live-1" not in client.get(f"/admin/events/{event.id}", headers=BEARER).text


def test_metrics_parse_with_prometheus_client(client: TestClient) -> None:
    ingest(client, LS.spec["sale"]["file"])
    ingest(client, LS.spec["sale"]["file"])
    client.post("/webhooks/shop", content=b"{}", headers={"x-signature": "00"})
    client.post("/webhooks/who-knows", content=b"{}")
    answer = client.get("/metrics", headers=BEARER)
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    received = {
        (s.labels["endpoint"], s.labels["outcome"]): s.value
        for s in families["partnero_bridge_webhooks_received"].samples
        if s.name.endswith("_total")
    }
    assert received[("shop", "stored")] >= 1 and received[("shop", "duplicate")] >= 1
    assert received[("shop", "rejected_unauthenticated")] >= 1
    assert received[("-", "rejected_unknown_endpoint")] >= 1
    assert not any(endpoint == "who-knows" for endpoint, _ in received)
    depth = {s.labels["queue"]: s.value for s in families["partnero_bridge_queue_depth"].samples}
    assert depth["calls"] == 1
    for name in (
        "partnero_bridge_ingest_seconds",
        "partnero_bridge_partnero_requests",
        "partnero_bridge_partnero_request_seconds",
        "partnero_bridge_oldest_pending_age_seconds",
        "partnero_bridge_dead_letters",
        "partnero_bridge_events",
        "partnero_bridge_program_paused",
    ):
        assert name in families, name
    openmetrics = client.get("/metrics", headers={**BEARER, "accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


def test_alerts_name_what_failed_but_never_emails_or_secrets() -> None:
    sent: list[dict[str, Any]] = []

    def chat(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(503 if len(sent) == 1 else 200)

    async def scenario() -> None:
        clock = [0.0]
        alerter = Alerter(
            "http://chat.test/hook", 60.0, ("sk_live_secret",), clock=lambda: clock[0],
            client=httpx.AsyncClient(transport=httpx.MockTransport(chat)),
        )  # fmt: skip
        reason = "Partnero 422: customer jane.doe+x@example.co.uk unknown (key sk_live_secret)"
        alerter.notify(Alert("dead_letter", "shop", reason, "12", "lemonsqueezy:order:1"))
        alerter.notify(Alert("dead_letter", "shop", reason, "13", "lemonsqueezy:order:2"))  # rate-limited
        clock[0] = 61.0
        alerter.notify(Alert("dead_letter", "shop", "again", "14", "lemonsqueezy:order:3"))
        await alerter.aclose()

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 30
    first, third, retried = sent  # the retry waits a second, the third alert does not
    assert first == retried  # the 503 was retried
    assert first["text"] and "lemonsqueezy:order:1" in first["text"] and "shop" in first["text"]
    assert "example.co.uk" not in json.dumps(first) and "sk_live_secret" not in json.dumps(first)
    assert (first["kind"], first["event"], first["transaction_key"]) == ("dead_letter", "12", "lemonsqueezy:order:1")
    assert third["suppressed"] == 1 and "+1 more" in third["text"]


def test_the_console_on_a_listener_of_its_own(bridge_factory: Any) -> None:
    from tests.bridge_process import free_port

    port = free_port()
    bridge = bridge_factory({"shop": LS.endpoint_settings}, admin={"token": TOKEN, "host": "127.0.0.1", "port": port})
    assert f"console: http://127.0.0.1:{port}/admin" in bridge.logs()
    assert httpx.get(f"{bridge.url}/admin", headers=BEARER).status_code == 404
    assert httpx.get(f"{bridge.url}/metrics", headers=BEARER).status_code == 404
    assert httpx.get(f"http://127.0.0.1:{port}/admin?format=json", headers=BEARER).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", headers=BEARER).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/webhooks/shop").status_code == 404
    # as public as the webhook listener, so it has the same HTTP limits
    oversize = httpx.get(f"http://127.0.0.1:{port}/admin", headers={**BEARER, "x-pad": "a" * 70_000})
    assert oversize.status_code == 431
    bridge.stop()
    # ended by the SIGTERM (uvicorn re-raises it after its graceful exit), not by stop()'s SIGKILL fallback
    assert bridge.proc is not None and bridge.proc.returncode == -signal.SIGTERM
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/admin", timeout=2)


def test_program_states_follow_the_automatic_flow_control(store: SQLiteStore) -> None:
    from bridge.delivery import Worker
    from bridge.flow import Verdict

    config = parse_config({"partnero": {"api_key": "pk", "base_url": "http://127.0.0.1:9/v1"}})
    worker = Worker(config, store)
    [scope] = [s.scope for s in worker.program_states(0.0)]
    assert [(s.scope, s.state, s.until) for s in worker.program_states(0.0)] == [(scope, "flowing", None)]
    breaker = worker._breakers[scope]
    for n in range(3):
        breaker.record(breaker.ticket(100.0 + n), Verdict.FAILURE, 100.5 + n)
    [state] = worker.program_states(103.0)
    assert (state.state, state.until) == ("open", breaker.until)
    probe = breaker.start_probe(breaker.until)
    assert worker.program_states(breaker.until)[0].state == "half-open"
    breaker.record(probe, Verdict.SUCCESS, 200.0)
    assert worker.program_states(200.0)[0].state == "flowing"
