"""End to end over real HTTP: a provider-shaped client → the bridge process → the Partnero test server.

Every registered provider with `tests/fixtures/<provider>/e2e.json` runs the shared cases; the
fault cases (Partnero errors, SIGKILL, oversize, malformed bodies) run once on the first provider.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from providers import registry
from tests.bridge_process import BridgeProcess
from tests.e2e_kit import ProviderCase, provider_cases
from tests.partnero_server import PartneroServer

CASES = provider_cases()
BridgeFactory = Callable[..., BridgeProcess]


def _posts(partnero: PartneroServer, method: str = "POST") -> list[object]:
    return [r for r in partnero.requests if r.method == method and r.path.startswith("/v1/transactions")]


def test_every_registered_provider_is_in_the_shared_suite() -> None:
    """A provider is registered by adding its module; it may not skip these cases by omitting e2e.json."""
    assert {c.provider for c in CASES} == set(registry())


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Iterator[ProviderCase]:
    """The provider case given by indirect parametrisation, its own API server running if it has one."""
    with request.param.provider_server() as running:
        yield running


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.provider, indirect=True)
def test_sale_duplicates_refund_and_bad_signatures(
    case: ProviderCase, partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    sale = case.spec["sale"]
    partnero.add_customer(sale["customer_key"])
    bridge = bridge_factory({"shop": case.endpoint_settings})

    body, headers, query = case.signed(sale["file"])
    # an unsigned call and a tampered one are refused and change nothing
    unsigned = bridge.post("shop", body, {"content-type": headers["content-type"]})
    assert unsigned.status_code == 401 and unsigned.text
    if case.spec.get("body_signed", True):
        tampered = bridge.post("shop", body + b" ", headers, query)
        assert tampered.status_code == 401

    for _ in range(3):
        assert bridge.post("shop", body, headers, query).status_code == 200
    partnero.wait_for(lambda s: len(_posts(s)) >= 1)
    bridge.wait_settled()
    creates = _posts(partnero)
    assert len(creates) == 1, bridge.logs()
    sent = partnero.live_transactions()
    assert len(sent) == 1
    assert sent[0].key == sale["key"]
    assert sent[0].amount == Decimal(sale["amount"])
    assert sent[0].amount_units == sale["currency"]
    assert sent[0].customer_key == sale["customer_key"]

    refund = case.spec["refund"]
    body, headers, query = case.signed(refund["file"])
    assert bridge.post("shop", body, headers, query).status_code == 200
    partnero.wait_for(lambda s: len(_posts(s, "DELETE")) >= 1)
    bridge.wait_settled()
    deletes = _posts(partnero, "DELETE")
    assert len(deletes) == 1
    assert partnero.live_transactions() == []
    assert partnero.ledger() == {}


PARTIAL = [(c, scenario) for c in CASES for scenario in c.spec.get("partial_refunds", [])]


@pytest.mark.parametrize(
    ("case", "scenario"), PARTIAL, ids=[f"{c.provider}-{s['name']}" for c, s in PARTIAL], indirect=["case"]
)
def test_partial_refunds_rebook_what_is_still_paid(
    case: ProviderCase, scenario: dict[str, Any], partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    """The sale, then each partial refund as the provider sends it: Partnero ends up with one live
    transaction for what is still paid, in the payment's currency (its own number of decimals).

    Each step is checked once the bridge has read and delivered it, so a step that must change nothing
    (a refund not settled yet) is seen to change nothing."""
    partnero.add_customer(scenario["customer_key"])
    bridge = bridge_factory({"shop": {**case.endpoint_settings, **scenario.get("endpoint", {})}})
    for step in [scenario["sale"], *scenario["refunds"]]:
        body, headers, query = case.signed(step["file"], edits=step.get("set"))
        assert bridge.post("shop", body, headers, query).status_code == 200
        booked = Decimal(step["booked"])
        expected = [] if booked == 0 else [(booked, scenario["currency"])]
        bridge.wait_settled()
        live = [(t.amount, t.amount_units) for t in partnero.live_transactions()]
        assert live == expected, (step["file"], bridge.logs()[-3000:])


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.spec.get("test_mode_file")], ids=lambda c: c.provider, indirect=True
)
def test_test_mode_events_are_skipped_by_default(
    case: ProviderCase, partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    partnero.add_customer(case.spec["sale"]["customer_key"])
    bridge = bridge_factory({"shop": case.endpoint_settings})
    body, headers, query = case.signed(case.spec["test_mode_file"])
    assert bridge.post("shop", body, headers, query).status_code == 200
    # a live sale after it is delivered, so the test-mode one had its chance to be sent first
    body, headers, query = case.signed(case.spec["sale"]["file"])
    assert bridge.post("shop", body, headers, query).status_code == 200
    partnero.wait_for(lambda s: len(_posts(s)) >= 1)
    bridge.wait_settled()
    assert [t.key for t in partnero.transactions] == [case.spec["sale"]["key"]]


@pytest.fixture
def first_case() -> ProviderCase:
    return next(c for c in CASES if c.provider == "lemonsqueezy")


def test_unknown_endpoint_oversize_and_malformed_bodies(
    first_case: ProviderCase, partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    bridge = bridge_factory({"shop": first_case.endpoint_settings})
    assert bridge.post("nope", b"{}").status_code == 404

    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    headers = dict(first_case.endpoint().adapter.sign(big, first_case.secret, time.time()).headers)
    response = bridge.post("shop", big, headers)
    assert response.status_code == 413
    assert "bytes" in response.text

    for junk in (b"not json at all", b'{"meta": 1}', b"[]", b"\xff\xfe"):
        signed = first_case.endpoint().adapter.sign(junk, first_case.secret, time.time())
        assert bridge.post("shop", junk, dict(signed.headers)).status_code == 200
    bridge.wait_settled()
    assert httpx.get(f"{bridge.url}/healthz").status_code == 200
    assert httpx.get(f"{bridge.url}/readyz").status_code == 200
    assert _posts(partnero) == []
    # the server is still serving real work after the junk
    sale = first_case.spec["sale"]
    partnero.add_customer(sale["customer_key"])
    body, headers, query = first_case.signed(sale["file"])
    assert bridge.post("shop", body, headers, query).status_code == 200
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1)


def test_partnero_errors_are_retried_and_delivered_once(
    first_case: ProviderCase, partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    sale = first_case.spec["sale"]
    partnero.add_customer(sale["customer_key"])
    partnero.fail_next(3, status=503, method="POST")
    bridge = bridge_factory({"shop": first_case.endpoint_settings})
    body, headers, query = first_case.signed(sale["file"])
    assert bridge.post("shop", body, headers, query).status_code == 200
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1, timeout=15)
    bridge.wait_settled()
    assert len(partnero.live_transactions()) == 1
    assert len(partnero.transactions) == 1
    assert len([r for r in _posts(partnero) if r.status == 503]) == 3


def test_sigkill_after_the_answer_loses_nothing_and_sends_once(
    first_case: ProviderCase, partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    sale = first_case.spec["sale"]
    partnero.add_customer(sale["customer_key"])
    # Partnero hangs, so the bridge is killed with the call stored and its delivery in flight
    partnero.hang_next(1, seconds=30, commit=True)
    bridge = bridge_factory({"shop": first_case.endpoint_settings})
    body, headers, query = first_case.signed(sale["file"])
    assert bridge.post("shop", body, headers, query).status_code == 200
    partnero.wait_for(lambda s: len(_posts(s)) == 1)
    bridge.kill()
    bridge.start()
    # after the restart the bridge must find the committed sale instead of posting it again
    partnero.wait_for(lambda s: any(r.method == "GET" for r in s.requests), timeout=15)
    bridge.wait_settled()
    assert len(partnero.transactions) == 1
    assert len(_posts(partnero)) == 1


def test_sigkill_before_delivery_delivers_after_restart(
    first_case: ProviderCase, partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    sale = first_case.spec["sale"]
    # Partnero unreachable while the first process lives: the call is stored, nothing delivered
    partnero.add_customer(sale["customer_key"])
    partnero.fail_next(1000, status=503)
    bridge = bridge_factory({"shop": first_case.endpoint_settings})
    body, headers, query = first_case.signed(sale["file"])
    assert bridge.post("shop", body, headers, query).status_code == 200
    bridge.kill()
    partnero.reset()
    partnero.add_customer(sale["customer_key"])
    bridge.start()
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1, timeout=15)
    bridge.wait_settled()
    assert len(partnero.live_transactions()) == 1


def test_secrets_and_payloads_never_reach_the_logs(partnero: PartneroServer, bridge_factory: BridgeFactory) -> None:
    endpoints = {c.provider: c.endpoint_settings for c in CASES if not c.spec.get("server")}
    for case in CASES:
        if case.provider in endpoints:
            partnero.add_customer(case.spec["sale"]["customer_key"])
    bridge = bridge_factory(endpoints)
    emails: set[str] = set()
    for case in CASES:
        if case.provider not in endpoints:
            continue
        body, headers, query = case.signed(case.spec["sale"]["file"])
        emails |= set(re.findall(r"[\w.+-]+(?:@|%40)[\w-]+\.[\w.]+", body.decode(errors="replace")))
        assert bridge.post(case.provider, body, headers, query).status_code == 200
        # a forged call with a near-miss secret is refused; its secret must not be echoed either
        forged = {k: v + "0" for k, v in headers.items() if k != "content-type"}
        assert bridge.post(case.provider, body + b"x", forged, query + "0").status_code == 401
    # the generic hmac example reproduces Paystack, so two endpoints may book one key
    keys = {c.spec["sale"]["key"] for c in CASES if c.provider in endpoints}
    partnero.wait_for(lambda s: {t.key for t in s.live_transactions()} == keys, timeout=30)
    logs = bridge.logs()
    secrets = {c.secret for c in CASES} | {partnero.api_key}
    assert "operation" in logs  # the log is not empty: there was something to leak
    for secret in secrets:
        assert secret not in logs
        assert secret.removeprefix("whsec_") not in logs
    assert len(emails) >= 3
    for email in emails:
        assert email.replace("%40", "@") not in logs, email
