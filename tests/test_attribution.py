"""Attribution end to end over real HTTP: the sign-up relay, and the partner key carried through checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.bridge_process import ROOT, BridgeProcess
from tests.e2e_kit import FIXTURES, ProviderCase, provider_cases
from tests.partnero_server import PartneroServer

LS: ProviderCase = next(c for c in provider_cases() if c.provider == "lemonsqueezy")
TOKEN = "relay-token-0123456789"
BridgeFactory = Callable[..., BridgeProcess]


def _bridge(bridge_factory: BridgeFactory, **endpoint: Any) -> BridgeProcess:
    return bridge_factory(
        {"shop": {**LS.endpoint_settings, **endpoint}},
        signups={"token": TOKEN, "wait_seconds": 30},
    )


def _signup(bridge: BridgeProcess, body: dict[str, Any], token: str = TOKEN) -> httpx.Response:
    return httpx.post(f"{bridge.url}/signups", json=body, headers={"authorization": f"Bearer {token}"}, timeout=10)


def _ls_order(order_id: str, custom: dict[str, str], email: str = "buyer@example.com", total: int = 4900) -> bytes:
    # fixture: tests/fixtures/lemonsqueezy/order_created.json (see SOURCES.md there), ids and data edited
    body = json.loads((FIXTURES / "lemonsqueezy" / "order_created.json").read_text())
    body["data"]["id"] = order_id
    body["data"]["attributes"].update(total=total, user_email=email, user_name="Ada Buyer")
    body["meta"]["custom_data"] = custom
    return json.dumps(body).encode()


def _ls_renewal(invoice_id: str, email: str, total: int = 4900) -> bytes:
    # fixture: tests/fixtures/lemonsqueezy/subscription_payment_success_renewal.json; no custom data, as renewals
    body = json.loads((FIXTURES / "lemonsqueezy" / "subscription_payment_success_renewal.json").read_text())
    body["data"]["id"] = invoice_id
    body["data"]["attributes"].update(total=total, user_email=email)
    body["meta"].pop("custom_data", None)
    return json.dumps(body).encode()


def _post(bridge: BridgeProcess, body: bytes) -> None:
    signed = LS.endpoint().adapter.sign(body, LS.secret, time.time())
    response = bridge.post("shop", body, {"content-type": "application/json", **signed.headers})
    assert response.status_code == 200, response.text


def _paths(partnero: PartneroServer, method: str = "POST") -> list[str]:
    return [r.path for r in partnero.requests if r.method == method]


def test_relay_creates_the_customer_once(partnero: PartneroServer, bridge_factory: BridgeFactory) -> None:
    partnero.add_partner("ptr_anna")
    bridge = _bridge(bridge_factory)
    body = {
        "key": "user-1",
        "email": "u1@example.com",
        "name": "Ada",
        "partner": {"key": "ptr_anna"},
        "tags": ["trial"],
        "options": {"referral_url": "https://example.com/?aff=ptr_anna"},
    }
    for _ in range(3):
        response = _signup(bridge, body)
        assert (response.status_code, response.json()) == (202, {"status": "accepted"})
    partnero.wait_for(lambda s: "user-1" in s.customers)
    bridge.wait_settled()
    assert _paths(partnero) == ["/v1/customers"]
    assert partnero.customers["user-1"].partner_key == "ptr_anna"
    sent = next(r.json for r in partnero.requests if r.path == "/v1/customers")
    assert sent["options"] == {"referral_url": "https://example.com/?aff=ptr_anna"} and sent["tags"] == ["trial"]


def test_relay_refuses_bad_requests_and_stores_nothing(partnero: PartneroServer, bridge_factory: BridgeFactory) -> None:
    bridge = _bridge(bridge_factory)
    assert _signup(bridge, {"key": "k"}, token="wrong").status_code == 401
    assert httpx.post(f"{bridge.url}/signups", json={"key": "k"}).status_code == 401
    missing = _signup(bridge, {"email": "x@example.com"})
    assert (missing.status_code, missing.json()) == (422, {"error": "required", "field": "key"})
    bad_partner = _signup(bridge, {"key": "k", "partner": {}})
    assert bad_partner.status_code == 422 and bad_partner.json()["field"] == "partner"
    bad_email = _signup(bridge, {"key": "k", "email": "nobody"})
    assert bad_email.json() == {"error": "not an email address", "field": "email"}
    unknown = _signup(bridge, {"key": "k", "partnerr": {"key": "p"}})
    assert unknown.status_code == 422 and unknown.json()["field"] == "partnerr"
    bridge.wait_settled()
    assert partnero.requests == []


def test_invalid_partner_is_skipped_not_referred(partnero: PartneroServer, bridge_factory: BridgeFactory) -> None:
    bridge = _bridge(bridge_factory)
    assert _signup(bridge, {"key": "user-2", "partner": {"key": "nobody"}}).status_code == 202
    partnero.wait_for(lambda s: len(s.requests) == 1)
    bridge.wait_settled()
    rows = json.loads(_cli(bridge, "events", "--json").stdout)
    assert rows[0]["status"] == "skipped"
    assert rows[0]["reason"].startswith("not referred: Invalid partner key")
    assert len(partnero.requests) == 1


def test_duplicate_customer_at_partnero_counts_as_delivered(
    partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    partnero.add_partner("ptr_anna")
    partnero.add_customer("user-3", partner_key="ptr_anna")
    bridge = _bridge(bridge_factory)
    assert _signup(bridge, {"key": "user-3", "partner": {"key": "ptr_anna"}}).status_code == 202
    partnero.wait_for(lambda s: len(s.requests) == 1)
    bridge.wait_settled()
    [row] = json.loads(_cli(bridge, "events", "--json").stdout)
    assert row["status"] == "delivered" and "already exists" in row["reason"]


def test_sale_right_after_a_pending_signup_waits_for_it(
    partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    partnero.add_partner("ptr_anna")
    # Partnero is failing sign-ups for a moment, so the sign-up is still pending when the sale arrives
    partnero.fail_next(3, status=503, method="POST", path="/v1/customers")
    bridge = _bridge(bridge_factory)
    assert (
        _signup(bridge, {"key": "user-4", "email": "u4@example.com", "partner": {"key": "ptr_anna"}}).status_code == 202
    )
    _post(bridge, _ls_order("7001", {"user_id": "user-4"}))
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1, timeout=20)
    order = [(r.method, r.path, r.status) for r in partnero.requests if r.status < 300 and r.path != "/v1/test"]
    assert order == [("POST", "/v1/customers", 200), ("POST", "/v1/transactions", 200)]
    assert partnero.live_transactions()[0].partner_key == "ptr_anna"


def test_no_backend_sale_creates_the_customer_and_renewals_follow(
    partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    partnero.add_partner("ptr_bob")
    bridge = _bridge(bridge_factory, customer_key=["email"], partner_key=["metadata.partnero_partner"])
    _post(bridge, _ls_order("7002", {"partnero_partner": "ptr_bob"}, email="nb@example.com"))
    # the renewal carries no custom data; it must wait for the creating sale, then go under the same key
    _post(bridge, _ls_renewal("8002", "nb@example.com", total=1900))
    partnero.wait_for(lambda s: len(s.live_transactions()) == 2, timeout=20)
    first, renewal = [r.json for r in partnero.requests if r.path == "/v1/transactions" and r.status == 200]
    assert first["options"] == {"create_customer": True}
    assert first["customer"] == {
        "key": "nb@example.com",
        "partner": {"key": "ptr_bob"},
        "email": "nb@example.com",
        "name": "Ada Buyer",
    }
    assert "options" not in renewal and renewal["customer"] == {"key": "nb@example.com"}
    assert partnero.customers["nb@example.com"].partner_key == "ptr_bob"
    assert {t.partner_key for t in partnero.live_transactions()} == {"ptr_bob"}


def test_no_backend_sale_with_an_invalid_partner_is_not_referred(
    partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    bridge = _bridge(bridge_factory, customer_key=["email"], partner_key=["metadata.partnero_partner"])
    _post(bridge, _ls_order("7003", {"partnero_partner": "ghost"}, email="g@example.com"))
    partnero.wait_for(lambda s: len(s.requests) == 1)
    bridge.wait_settled()
    [row] = json.loads(_cli(bridge, "events", "--json").stdout)
    assert (row["status"], row["reason"][:12]) == ("skipped", "not referred")
    assert partnero.transactions == []


def test_signup_email_maps_a_provider_that_only_carries_the_email(
    partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    partnero.add_partner("ptr_anna")
    bridge = _bridge(bridge_factory, customer_key=["metadata.user_id", "signup:email", "email"])
    assert (
        _signup(bridge, {"key": "acct-77", "email": "Mixed@Example.com", "partner": {"key": "ptr_anna"}}).status_code
        == 202
    )
    _post(bridge, _ls_order("7004", {}, email="mixed@example.com"))
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1, timeout=20)
    assert partnero.live_transactions()[0].customer_key == "acct-77"


def test_signup_command_for_backfills(partnero: PartneroServer, bridge_factory: BridgeFactory) -> None:
    partnero.add_partner("ptr_anna")
    bridge = _bridge(bridge_factory)
    result = _cli(bridge, "signup", "--key", "old-user", "--partner-key", "ptr_anna", "--email", "o@example.com")
    assert result.returncode == 0 and "queued" in result.stdout, result.stderr
    partnero.wait_for(lambda s: "old-user" in s.customers, timeout=10)
    again = _cli(bridge, "signup", "--key", "old-user", "--partner-key", "ptr_anna", "--email", "o@example.com")
    assert "already queued" in again.stdout
    bad = _cli(bridge, "signup", "--key", "x", "--email", "nope")
    assert bad.returncode == 2 and "email: not an email address" in bad.stderr


def _cli(bridge: BridgeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args, "--config", str(bridge.config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_signup_without_partner_is_kept_for_email_mapping_and_not_sent(
    partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    partnero.add_customer("acct-9")
    bridge = _bridge(bridge_factory, customer_key=["signup:email", "email"])
    assert _signup(bridge, {"key": "acct-9", "email": "organic@example.com"}).status_code == 202
    _post(bridge, _ls_order("7009", {}, email="organic@example.com"))
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1, timeout=20)
    assert [r.path for r in partnero.requests] == ["/v1/transactions"]
    assert partnero.live_transactions()[0].customer_key == "acct-9"
    signup_row = next(r for r in json.loads(_cli(bridge, "events", "--json").stdout) if r["kind"] == "signup")
    assert (signup_row["status"], signup_row["reason"]) == ("skipped", "not referred: no partner in the sign-up")


def test_partneros_422_naming_the_partner_is_not_referred(
    partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    partnero.fail_next(1, status=422, body={"message": "The partner field is required."}, path="/v1/customers")
    bridge = _bridge(bridge_factory)
    assert _signup(bridge, {"key": "user-5", "partner": {"email": "p@example.com"}}).status_code == 202
    partnero.wait_for(lambda s: len(s.requests) == 1)
    bridge.wait_settled()
    [row] = json.loads(_cli(bridge, "events", "--json").stdout)
    assert (row["status"], row["reason"]) == ("skipped", "not referred: The partner field is required.")
