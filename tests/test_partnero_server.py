"""Tests of the Partnero test server over real HTTP: the API it models and every injected fault."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.partnero_server import PartneroServer

KEY = "ls:order:1001"


@pytest.fixture(scope="module")
def running() -> Iterator[PartneroServer]:
    with PartneroServer() as server:
        yield server


@pytest.fixture
def server(running: PartneroServer) -> PartneroServer:
    running.reset()
    running.add_partner("partner_1", email="affiliate@example.com", id=7)
    running.add_customer("cus_1", partner_key="partner_1", email="buyer@example.com")
    return running


@pytest.fixture
def client(server: PartneroServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.api_key}", "Accept": "application/json"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=5) as client:
        yield client


def sale(key: str = KEY, amount: str = "9.99", customer: str = "cus_1", **extra: Any) -> bytes:
    """A sale body written as JSON text, so the amount travels exactly as written (no float)."""
    fields = {"key": key, "amount_units": "USD", "action": "sale", "customer": {"key": customer}, **extra}
    return (json.dumps(fields)[:-1] + f', "amount": {amount}}}').encode()


def post_sale(client: httpx.Client, body: bytes | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return client.post("/transactions", content=sale() if body is None else body, headers=headers)


# -- auth ----------------------------------------------------------------------------------------------


def test_url_ends_in_v1_and_the_key_check_answers(server: PartneroServer, client: httpx.Client) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
    response = client.get("/test")
    assert response.status_code == 200
    assert response.json()["status"] == 1


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "test-partnero-key"])
def test_requests_without_the_bearer_key_are_unauthenticated(server: PartneroServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [("GET", "/test"), ("POST", "/transactions"), ("DELETE", f"/transactions/{KEY}")]:
        response = httpx.request(method, server.url + path, headers=headers, content=sale())
        assert (response.status_code, response.json()) == (401, {"message": "Unauthenticated."})
    assert server.transactions == []
    assert [r.status for r in server.requests] == [401, 401, 401]


# -- transactions --------------------------------------------------------------------------------------


def test_sale_is_recorded_with_the_exact_decimal_amount(server: PartneroServer, client: httpx.Client) -> None:
    response = post_sale(client, sale(amount="123456789.123456789"))
    assert response.status_code == 200
    data = response.json(parse_float=Decimal)["data"]
    assert data["key"] == KEY
    assert data["amount"] == Decimal("123456789.123456789")
    assert (data["amount_units"], data["action"], data["deleted_at"]) == ("USD", "sale", None)
    assert data["customer"]["key"] == "cus_1"
    assert data["partner"]["key"] == "partner_1"
    assert [reward["status"] for reward in data["rewards"]] == ["ok"]
    [transaction] = server.transactions
    assert transaction.amount == Decimal("123456789.123456789")
    assert (transaction.customer_key, transaction.partner_key) == ("cus_1", "partner_1")
    assert server.requests[-1].json["amount"] == Decimal("123456789.123456789")


def test_reward_may_replace_amount(server: PartneroServer, client: httpx.Client) -> None:
    body = b'{"key": "k1", "reward": 5, "customer": {"key": "cus_1"}}'
    assert post_sale(client, body).status_code == 200
    assert (server.transactions[0].amount, server.transactions[0].reward) == (None, Decimal(5))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"amount": 9.99, "customer": {"key": "cus_1"}}', "key"),
        (b'{"key": 12, "amount": 9.99, "customer": {"key": "cus_1"}}', "key"),
        (b'{"key": "k", "customer": {"key": "cus_1"}}', "amount"),
        (b'{"key": "k", "amount": "9.99", "customer": {"key": "cus_1"}}', "amount"),
        (b'{"key": "k", "amount": true, "customer": {"key": "cus_1"}}', "amount"),
        (b'{"key": "k", "amount": 9.99}', "customer.key"),
        (b'{"key": "k", "amount": 9.99, "customer": {"name": "Ann"}}', "customer.key"),
    ],
)
def test_invalid_sale_is_422_naming_the_field(
    server: PartneroServer, client: httpx.Client, body: bytes, field: str
) -> None:
    response = post_sale(client, body)
    assert response.status_code == 422
    assert response.json()["message"]
    assert list(response.json()["errors"]) == [field]
    assert server.transactions == []


def test_customer_may_be_named_by_email(server: PartneroServer, client: httpx.Client) -> None:
    body = b'{"key": "k", "amount": 1, "customer": {"email": "buyer@example.com"}}'
    assert post_sale(client, body).status_code == 200
    assert server.transactions[0].customer_key == "cus_1"


def test_malformed_json_is_rejected_without_effect(server: PartneroServer, client: httpx.Client) -> None:
    response = post_sale(client, b'{"key": "k", "amount": 9.99')
    assert response.status_code == 400
    assert server.transactions == []


def test_same_key_posted_twice_is_stored_twice(server: PartneroServer, client: httpx.Client) -> None:
    assert post_sale(client).status_code == 200
    assert post_sale(client).status_code == 200
    assert server.ledger() == {KEY: [Decimal("9.99"), Decimal("9.99")]}
    assert [t.id for t in server.transactions] == [1, 2]


@pytest.mark.parametrize(
    ("mode", "status", "stored"), [("404", 404, False), ("422", 422, False), ("accept", 200, True)]
)
def test_unknown_customer_is_switchable(
    server: PartneroServer, client: httpx.Client, mode: Any, status: int, stored: bool
) -> None:
    server.unknown_customer = mode
    response = post_sale(client, sale(customer="nobody"))
    assert response.status_code == status
    if mode == "404":
        assert response.json() == {"message": "Customer not found."}
    if mode == "422":
        assert list(response.json()["errors"]) == ["customer.key"]
    if stored:
        assert response.json()["data"]["rewards"] == []
        assert server.transactions[0].partner_key is None
    assert len(server.transactions) == int(stored)


def test_create_customer_option_creates_an_attributed_customer(server: PartneroServer, client: httpx.Client) -> None:
    options = {"create_customer": True}
    customer = {"key": "cus_new", "email": "new@example.com", "name": "New", "partner": {"id": "7"}}
    body = sale(customer="cus_new", options=options).replace(b'{"key": "cus_new"}', json.dumps(customer).encode())
    response = post_sale(client, body)
    assert response.status_code == 200
    assert response.json()["data"]["partner"]["key"] == "partner_1"
    assert server.customers["cus_new"].partner_key == "partner_1"
    assert server.customers["cus_new"].email == "new@example.com"
    assert server.transactions[0].partner_key == "partner_1"


def test_create_customer_option_with_unknown_partner_is_400(server: PartneroServer, client: httpx.Client) -> None:
    customer = b'{"key": "cus_new", "partner": {"key": "ghost"}}'
    body = sale(customer="cus_new", options={"create_customer": True}).replace(b'{"key": "cus_new"}', customer)
    response = post_sale(client, body)
    assert (response.status_code, response.json()) == (400, {"message": "Invalid partner key"})
    assert "cus_new" not in server.customers
    assert server.transactions == []


def test_lookup_by_key_lists_only_live_transactions(server: PartneroServer, client: httpx.Client) -> None:
    post_sale(client)
    post_sale(client, sale(key="other:1"))
    listed = client.get("/transactions", params={"key": KEY}).json()
    assert [t["key"] for t in listed["data"]] == [KEY]
    assert listed["meta"]["total"] == 1 and listed["links"]["next"] is None
    assert listed["status"] == 1
    assert client.get("/transactions", params={"key": "missing"}).json()["data"] == []
    assert client.get(f"/transactions/{KEY}").json()["data"]["amount"] == 9.99
    missing = client.get("/transactions/missing")
    assert (missing.status_code, missing.json()) == (404, {"message": "Transaction not found"})


def test_list_pages_follow_links_next(server: PartneroServer, client: httpx.Client) -> None:
    for _ in range(3):
        post_sale(client)
    first = client.get("/transactions", params={"key": KEY, "limit": 2}).json()
    assert len(first["data"]) == 2 and first["meta"]["last_page"] == 2
    second = httpx.get(first["links"]["next"], headers=client.headers).json()
    assert len(second["data"]) == 1 and second["links"]["next"] is None


def test_delete_by_url_encoded_key_removes_every_live_copy(server: PartneroServer, client: httpx.Client) -> None:
    post_sale(client)
    post_sale(client)
    post_sale(client, sale(key="other:1"))
    response = client.delete("/transactions/ls%3Aorder%3A1001")
    assert (response.status_code, response.json()) == (200, {"status": 1})
    assert server.requests[-1].path == f"/v1/transactions/{KEY}"
    assert server.ledger() == {"other:1": [Decimal("9.99")]}
    assert len(server.transactions) == 3
    assert all(t.deleted_at is not None for t in server.transactions if t.key == KEY)
    again = client.delete(f"/transactions/{KEY}")
    assert (again.status_code, again.json()) == (404, {"message": "Transaction not found"})
    assert client.get(f"/transactions/{KEY}").status_code == 404


def test_delete_accepts_the_old_body_form_and_keys_with_slashes(server: PartneroServer, client: httpx.Client) -> None:
    post_sale(client, sale(key="wc:order:a/b"))
    assert client.request("DELETE", "/transactions", json={"key": "wc:order:a/b"}).status_code == 200
    assert server.live_transactions() == []
    post_sale(client, sale(key="wc:order:a/b"))
    assert client.delete("/transactions/wc%3Aorder%3Aa%2Fb").status_code == 200
    assert server.live_transactions() == []
    assert client.request("DELETE", "/transactions", json={}).status_code == 422


# -- customers -----------------------------------------------------------------------------------------


def test_customer_create_and_get(server: PartneroServer, client: httpx.Client) -> None:
    body = {"key": "cus_2", "email": "two@example.com", "partner": {"email": "affiliate@example.com"}}
    response = client.post("/customers", json=body)
    assert response.status_code == 200
    assert response.json()["data"]["partner"]["key"] == "partner_1"
    assert server.customers["cus_2"].partner_key == "partner_1"
    assert client.get("/customers/cus_2").json()["data"]["email"] == "two@example.com"
    missing = client.get("/customers/nobody")
    assert (missing.status_code, missing.json()) == (404, {"message": "Customer not found."})


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"email": "x@example.com", "partner": {"key": "partner_1"}}, 422, "key"),
        ({"key": "cus_3"}, 422, "partner"),
        ({"key": "cus_3", "partner": {}}, 422, "partner"),
        ({"key": "cus_3", "partner": {"key": "ghost"}}, 400, None),
        ({"key": "cus_1", "partner": {"key": "partner_1"}}, 422, "key"),
    ],
)
def test_customer_create_errors(
    server: PartneroServer, client: httpx.Client, body: dict[str, Any], status: int, field: str | None
) -> None:
    response = client.post("/customers", json=body)
    assert response.status_code == status
    if field is None:
        assert response.json() == {"message": "Invalid partner key"}
    else:
        assert field in response.json()["errors"]
    assert set(server.customers) == {"cus_1"}


def test_duplicate_customer_messages(server: PartneroServer, client: httpx.Client) -> None:
    body = {"key": "cus_1", "partner": {"key": "partner_1"}}
    assert client.post("/customers", json=body).json()["message"] == "Duplicate key"
    server.duplicate_customer = "409"
    response = client.post("/customers", json=body)
    assert (response.status_code, response.json()) == (409, {"message": "Duplicate key"})


# -- faults --------------------------------------------------------------------------------------------


def test_fail_next_answers_without_committing(server: PartneroServer, client: httpx.Client) -> None:
    server.fail_next(2, status=503, body=b"<html>down</html>", headers={"X-Trace": "t1"}, method="POST")
    assert client.get("/test").status_code == 200  # filtered by method
    first, second, third = post_sale(client), post_sale(client), post_sale(client)
    assert (first.status_code, first.text, first.headers["x-trace"]) == (503, "<html>down</html>", "t1")
    assert (second.status_code, third.status_code) == (503, 200)
    assert server.ledger() == {KEY: [Decimal("9.99")]}
    assert [r.fault for r in server.requests] == [None, "fail", "fail", None]


def test_fail_next_filters_by_path_prefix(server: PartneroServer, client: httpx.Client) -> None:
    server.fail_next(1, path="/customers")
    assert post_sale(client).status_code == 200
    assert client.get("/customers/cus_1").json() == {"message": "Server Error"}
    assert client.get("/customers/cus_1").status_code == 200


@pytest.mark.parametrize("retry_after", [None, 3])
def test_rate_limit_next(server: PartneroServer, client: httpx.Client, retry_after: int | None) -> None:
    server.rate_limit_next(1, retry_after=retry_after)
    limited = post_sale(client)
    assert limited.status_code == 429
    assert limited.headers.get("retry-after") == (None if retry_after is None else "3")
    assert server.transactions == []
    assert post_sale(client).status_code == 200


def test_hang_next_commits_then_the_client_times_out(server: PartneroServer, client: httpx.Client) -> None:
    server.hang_next(1, seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        client.post("/transactions", content=sale(), timeout=0.2)
    assert server.ledger() == {KEY: [Decimal("9.99")]}  # the ambiguous case: Partnero has it
    assert client.get("/transactions", params={"key": KEY}).json()["meta"]["total"] == 1
    assert (server.requests[0].status, server.requests[0].fault) == (200, "hang")
    assert server.requests[1].in_flight == 1  # the lookup is not concurrent with the abandoned post


def test_hang_next_without_commit_answers_late_504(server: PartneroServer, client: httpx.Client) -> None:
    server.hang_next(1, seconds=0.3, commit=False)
    started = time.monotonic()
    assert post_sale(client).status_code == 504
    assert time.monotonic() - started >= 0.3
    assert server.transactions == []


@pytest.mark.parametrize("commit", [True, False])
def test_break_next_makes_httpx_raise(server: PartneroServer, client: httpx.Client, commit: bool) -> None:
    server.break_next(1, commit=commit)
    with pytest.raises(httpx.RemoteProtocolError):
        post_sale(client)
    assert len(server.transactions) == int(commit)
    assert server.requests[-1].fault == "break"
    assert post_sale(client).status_code == 200  # the pool recovers with a fresh connection


def test_fail_ratio_is_seeded_and_never_commits_a_failure(server: PartneroServer, client: httpx.Client) -> None:
    def run() -> list[int]:
        server.reset()
        server.add_customer("cus_1")
        server.fail_ratio(0.3, seed=42, path="/transactions")
        return [post_sale(client).status_code for _ in range(60)]

    statuses = run()
    assert statuses == run()
    failures = [s for s in statuses if s != 200]
    assert 5 <= len(failures) <= 35
    assert set(failures) <= {500, 502, 503}
    assert len(server.transactions) == statuses.count(200)
    server.fail_ratio(0)
    assert all(post_sale(client).status_code == 200 for _ in range(10))


def test_in_flight_counts_concurrent_requests_per_key(server: PartneroServer) -> None:
    server.latency = 0.3
    headers = {"Authorization": f"Bearer {server.api_key}"}
    bodies = [sale(), sale(), sale(key="other:1")]
    threads = [
        threading.Thread(
            target=httpx.post, args=(server.url + "/transactions",), kwargs={"content": body, "headers": headers}
        )
        for body in bodies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_key = {key: sorted(r.in_flight for r in server.requests if r.transaction_key == key) for key in (KEY, "other:1")}
    assert by_key == {KEY: [1, 2], "other:1": [1]}


def test_unknown_route_and_method_answer_json(client: httpx.Client) -> None:
    assert client.get("/payout-requests").json() == {"message": "Not Found"}
    assert client.put("/transactions").status_code == 405


def test_reset_forgets_state_and_faults(server: PartneroServer, client: httpx.Client) -> None:
    post_sale(client)
    server.fail_next(5)
    server.unknown_customer = "accept"
    server.reset()
    assert (server.transactions, server.customers, server.requests) == ([], {}, [])
    assert client.get("/test").status_code == 200
    assert post_sale(client, sale(customer="nobody")).status_code == 404


def test_wait_for_polls_until_the_condition_holds(server: PartneroServer, client: httpx.Client) -> None:
    timer = threading.Timer(0.1, post_sale, args=(client,))
    timer.start()
    server.wait_for(lambda s: len(s.transactions) == 1, timeout=5)
    timer.join()
    with pytest.raises(TimeoutError):
        server.wait_for(lambda s: len(s.transactions) == 2, timeout=0.1)


def test_stop_finishes_quickly_while_a_request_hangs() -> None:
    server = PartneroServer().start()
    server.hang_next(1, seconds=60)
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(
                httpx.get(server.url + "/test", headers={"Authorization": f"Bearer {server.api_key}"}, timeout=30)
            )
        except httpx.TransportError as error:
            outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    server.wait_for(lambda s: len(s.requests) == 1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    caller.join(5)
    assert not caller.is_alive() and len(outcome) == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/test", timeout=1)


def test_partners_are_found_by_email_and_created_once(server: PartneroServer, client: httpx.Client) -> None:
    found = client.get("/partners", params={"email": "AFFILIATE@example.com"}).json()
    assert [p["key"] for p in found["data"]] == ["partner_1"] and found["status"] == 1
    assert client.get("/partners", params={"email": "nobody@example.com"}).json()["data"] == []
    created = client.post("/partners", json={"email": "new@example.com", "name": "Ann", "surname": "Lee"})
    assert created.status_code == 201
    key = created.json()["data"]["key"]
    assert client.get(f"/partners/{key}").json()["data"]["surname"] == "Lee"
    again = client.post("/partners", json={"email": "New@example.com"})
    assert again.status_code == 422 and again.json()["errors"] == {"email": ["The email has already been taken."]}
    assert client.post("/partners", json={"name": "No Mail"}).status_code == 422
    assert client.get("/partners/missing").status_code == 404


def test_promotion_codes_list_and_get_in_the_documented_shape(server: PartneroServer, client: httpx.Client) -> None:
    server.add_partner("ptr_host", id="prt_host")
    server.add_promotion_code("PODCAST20", "ptr_host")
    server.add_promotion_code("EVERYONE10")
    listed = client.get("/promotion-codes", params={"limit": 1, "page": 2}).json()
    assert [c["code"] for c in listed["data"]] == ["EVERYONE10"]
    assert listed["meta"]["last_page"] == 2
    one = client.get("/promotion-codes/PODCAST20").json()["data"]
    assert one["limit_to_specific_partner"] is True
    assert one["coupon_specific_partners"] == [{"id": "prt_host", "full_name": "ptr_host"}]
    assert client.get("/promotion-codes/podcast20").status_code == 404
    with pytest.raises(ValueError, match="with an id"):
        server.add_promotion_code("NOID", "ptr_unknown")
