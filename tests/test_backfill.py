"""Backfill and reconcile over each provider's API test server, through the ledger: never a second post."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import backfill
from tests.bridge_process import ROOT
from tests.inprocess_kit import LedgerBridge, fixture
from tests.partnero_server import PartneroServer
from tests.provider_api_server import API_KEY, ProviderApiServer

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
LS_KEYS = ["metadata.user_id", "known:customer_id", "known:email", "email"]


def ls_order(order_id: str, email: str, day: str, status: str = "paid", refunded: int = 0, **extra: Any) -> Any:
    # tests/fixtures/lemonsqueezy/api/order.json (SOURCES.md there); id, email, date and refund edited
    order = fixture("lemonsqueezy", "api/order.json")
    order["id"] = order_id
    attributes = order["attributes"]
    attributes.update(user_email=email, created_at=f"{day}T10:00:00.000000Z", status=status, **extra)
    attributes.update(refunded_amount=refunded, refunded=status == "refunded")
    return order


def ls_invoice(invoice_id: str, email: str, day: str, reason: str = "renewal") -> Any:
    # tests/fixtures/lemonsqueezy/api/subscription_invoice.json (SOURCES.md there)
    invoice = fixture("lemonsqueezy", "api/subscription_invoice.json")
    invoice["id"] = invoice_id
    invoice["attributes"].update(user_email=email, created_at=f"{day}T10:00:00.000000Z", billing_reason=reason)
    return invoice


def as_webhook(event: str, order: Any, custom: dict[str, str]) -> bytes:
    meta = {"event_name": event, "custom_data": custom, "test_mode": False}
    return json.dumps({"meta": meta, "data": order}).encode()


@pytest.fixture
def lemon_api() -> Iterator[ProviderApiServer]:
    with ProviderApiServer("lemonsqueezy") as server:
        yield server


def ls_bridge(tmp_path: Path, partnero: PartneroServer, api: ProviderApiServer, **endpoint: Any) -> LedgerBridge:
    partnero.unknown_customer = "accept"
    settings = {
        "provider": "lemonsqueezy",
        "secret": "s" * 16,
        "customer_key": LS_KEYS,
        "api_key": API_KEY,
        "api_base_url": f"{api.url}/v1",
        "api_requests_per_second": 1000,
        **endpoint,
    }
    return LedgerBridge(f"sqlite:///{tmp_path}/bridge.db", partnero, {"lemon": settings})


def run(bridge: LedgerBridge, dry_run: bool = False, **kwargs: Any) -> backfill.Summary:
    endpoint = bridge.config.endpoints["lemon"]
    summary: backfill.Summary = bridge.run(
        backfill.run(bridge.config, bridge.store, endpoint, SINCE, UNTIL, dry_run=dry_run, **kwargs)
    )
    return summary


def test_lemon_squeezy_backfill_delivers_what_webhooks_missed_once(
    tmp_path: Path, partnero: PartneroServer, lemon_api: ProviderApiServer
) -> None:
    with ls_bridge(tmp_path, partnero, lemon_api) as bridge:
        # the webhook of the first order arrived, with the merchant's key in its custom data
        first = ls_order("11", "ada@example.com", "2026-02-01")
        bridge.receive("lemon", as_webhook("order_created", first, {"user_id": "U-ada"}))
        bridge.drain()
        lemon_api.add("/v1/orders", first)
        # these never came as webhooks: a second order, a renewal, a refunded order, a failed one
        lemon_api.add("/v1/orders", ls_order("12", "ada@example.com", "2026-03-01"))
        lemon_api.add("/v1/orders", ls_order("13", "bo@example.com", "2026-03-02", status="refunded", refunded=5899))
        lemon_api.add("/v1/orders", ls_order("14", "cy@example.com", "2026-03-03", status="failed"))
        lemon_api.add("/v1/orders", ls_order("10", "old@example.com", "2025-12-01"))  # before --since
        lemon_api.add("/v1/subscription-invoices", ls_invoice("21", "ada@example.com", "2026-04-01"))
        lemon_api.add("/v1/subscription-invoices", ls_invoice("20", "ada@example.com", "2026-02-01", "initial"))

        dry = run(bridge, dry_run=True)
        new = ["lemonsqueezy:order:12 (sale)", "lemonsqueezy:invoice:21 (sale)"]
        assert (dry.seen, dry.known, dry.new) == (6, 1, new)
        assert len(bridge.events()) == 1  # a dry run records nothing

        summary = run(bridge)
        assert (summary.seen, summary.known, summary.new) == (6, 1, new)
        # sold and refunded before the bridge heard of it: recorded, and nothing to send
        assert summary.skipped == {"superseded before it was sent": 1}
        assert summary.ignored == {
            "order status is failed, not paid": 1,
            "first subscription payment: counted by order_created under the order key": 1,
        }
        bridge.drain()
        # the missed payments are booked to the key the webhook taught the memory; the refunded
        # order was cancelled before it was ever sent, and nothing was posted twice
        assert {t.key: t.customer_key for t in partnero.live_transactions()} == {
            "lemonsqueezy:order:11": "U-ada",
            "lemonsqueezy:order:12": "U-ada",
            "lemonsqueezy:invoice:21": "U-ada",
        }
        assert len(partnero.transactions) == 3

        again = run(bridge)
        assert (again.seen, again.known, again.new) == (6, 4, [])
        bridge.drain()
        assert len(partnero.transactions) == 3
        # the webhook that finally arrives for a backfilled payment is a duplicate
        bridge.receive("lemon", as_webhook("order_created", ls_order("12", "ada@example.com", "2026-03-01"), {}))
        bridge.drain()
        assert bridge.events()[-1].status == "duplicate"
        assert len(partnero.transactions) == 3


def test_a_known_payment_still_teaches_the_memory(
    tmp_path: Path, partnero: PartneroServer, lemon_api: ProviderApiServer
) -> None:
    with ls_bridge(tmp_path, partnero, lemon_api, customer_key=["metadata.user_id", "known:customer_id"]) as bridge:
        order = ls_order("31", "dee@example.com", "2026-05-01", customer_id=777)
        bridge.receive("lemon", as_webhook("order_created", order, {"user_id": "U-dee"}))
        bridge.drain()
        scope = bridge.config.endpoints["lemon"].partnero.scope
        # a store upgraded from before the memory: what the sale taught is not there yet
        bridge.tx(lambda tx: tx._x("DELETE FROM customer_memory"))  # type: ignore[attr-defined]
        lemon_api.add("/v1/orders", order)
        summary = run(bridge)
        assert (summary.known, summary.new) == (1, [])
        found = bridge.tx(lambda tx: tx.recall(scope, "customer_id:lemonsqueezy", "777"))
        assert found is not None and found.customer_key == "U-dee"
        assert len(bridge.events()) == 1  # known payments leave no event behind


def test_pages_are_read_newest_first_and_the_run_is_bounded(
    tmp_path: Path, partnero: PartneroServer, lemon_api: ProviderApiServer
) -> None:
    for n in range(230):
        lemon_api.add("/v1/orders", ls_order(str(1000 + n), f"b{n}@example.com", f"2026-0{1 + n % 9}-1{n % 10}"))
    with ls_bridge(tmp_path, partnero, lemon_api) as bridge:
        summary = run(bridge, dry_run=True)
        assert summary.seen == 230 and summary.stopped is None
        order_pages = [r for r in lemon_api.requests if r.path == "/v1/orders"]
        assert [r.query["page[number]"] for r in order_pages] == ["1", "2", "3"]
        assert {r.query["page[size]"] for r in order_pages} == {"100"}
        bounded = run(bridge, max_requests=2)
        assert bounded.api_requests == 2 and bounded.seen == 0
        assert bounded.stopped == "stopped after 2 Lemon Squeezy API requests (the limit)"


def test_rate_limits_are_waited_out_or_end_the_run(
    tmp_path: Path, partnero: PartneroServer, lemon_api: ProviderApiServer
) -> None:
    lemon_api.add("/v1/orders", ls_order("41", "e@example.com", "2026-06-01"))
    with ls_bridge(tmp_path, partnero, lemon_api) as bridge:
        lemon_api.fail_next(1, 429, retry_after="1")
        waited = run(bridge, dry_run=True)
        assert waited.stopped is None and waited.seen == 1
        assert [r.status for r in lemon_api.requests][:2] == [429, 200]
        lemon_api.fail_next(1, 429, retry_after="3600")
        stopped = run(bridge, dry_run=True)
        assert stopped.stopped == "Lemon Squeezy API rate limit: asked to wait 3600s"
        lemon_api.fail_next(2, 503)
        recovered = run(bridge, dry_run=True)
        assert recovered.stopped is None and recovered.seen == 1


def test_a_wrong_key_or_no_key_says_so(tmp_path: Path, partnero: PartneroServer, lemon_api: ProviderApiServer) -> None:
    with ls_bridge(tmp_path, partnero, lemon_api, api_key="wrong-key") as bridge:
        assert run(bridge).stopped == "Lemon Squeezy API refused the endpoint's api_key (401)"
    with ls_bridge(tmp_path, partnero, lemon_api, api_key=None) as bridge, pytest.raises(backfill.HistoryUnavailable):
        run(bridge)
    endpoints = {"g": {"provider": "gumroad", "secret": "s" * 16}}
    with LedgerBridge(f"sqlite:///{tmp_path}/g.db", partnero, endpoints) as bridge:
        endpoint = bridge.config.endpoints["g"]
        with pytest.raises(backfill.HistoryUnavailable, match="not available for this provider"):
            asyncio.run(backfill.run(bridge.config, bridge.store, endpoint, SINCE, UNTIL))


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_commands_print_a_summary(tmp_path: Path, partnero: PartneroServer, lemon_api: ProviderApiServer) -> None:
    lemon_api.add("/v1/orders", ls_order("51", "f@example.com", "2026-07-01"))
    config = tmp_path / "config.yaml"
    endpoint = {
        "provider": "lemonsqueezy",
        "secret": "s" * 16,
        "customer_key": ["email"],
        "api_key": "${LS_API_KEY}",
        "api_base_url": f"{lemon_api.url}/v1",
    }
    raw = {
        "store": f"sqlite:///{tmp_path}/cli.db",
        "partnero": {"api_key": partnero.api_key, "base_url": partnero.url},
        "endpoints": {"lemon": endpoint},
    }
    config.write_text(yaml.safe_dump(raw))
    import os

    os.environ["LS_API_KEY"] = API_KEY
    try:
        reconciled = _cli(config, "reconcile", "lemon", "--since", "2026-06-01")
        assert reconciled.returncode == 0, reconciled.stderr
        assert "missed by the webhooks: lemonsqueezy:order:51 (sale)" in reconciled.stdout
        assert "seen 1, already known 0, new 1" in reconciled.stdout
        assert "nothing recorded (--apply to queue them)" in reconciled.stdout
        applied = _cli(config, "backfill", "lemon", "--since", "2026-06-01", "--until", "2026-08-01")
        assert "queued 1; a running bridge delivers them" in applied.stdout, applied.stderr
        assert API_KEY not in applied.stdout + applied.stderr
        again = _cli(config, "reconcile", "lemon", "--since", "2026-06-01", "--apply")
        assert "seen 1, already known 1, new 0" in again.stdout
        unknown = _cli(config, "backfill", "nope", "--since", "7d")
        assert unknown.returncode == 2 and "no endpoint 'nope'" in unknown.stderr
    finally:
        del os.environ["LS_API_KEY"]


# --- the other providers: one webhook delivered, one payment missed, one sold and refunded -----------

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def polar_order(ident: str, email: str, day: str, refunded: bool = False) -> Any:
    # tests/fixtures/polar/api/order.json (SOURCES.md there); id, buyer and date edited
    order = fixture("polar", "api/order.json")
    order.update(id=ident, created_at=f"{day}T09:15:20.003000Z", customer_id=f"cus-{email}")
    order["customer"].update(email=email, id=f"cus-{email}", external_id=None)
    order["metadata"] = {}
    if refunded:
        order.update(status="refunded", refunded_amount=order["net_amount"], refunded_tax_amount=order["tax_amount"])
    return order


def creem_transaction(ident: str, email: str, day: str, refunded: bool = False) -> Any:
    # tests/fixtures/creem/api/transaction.json (SOURCES.md there)
    transaction = fixture("creem", "api/transaction.json")
    moment = datetime.fromisoformat(f"{day}T10:00:00+00:00")
    transaction.update(id=ident, customer=f"cust-{email}", created_at=int(moment.timestamp() * 1000))
    if refunded:
        transaction.update(status="refunded", refunded_amount=transaction["amount_paid"])
    return transaction


def dodo_payment(ident: str, email: str, day: str) -> Any:
    # tests/fixtures/dodopayments/api/payment.json (SOURCES.md there)
    payment = fixture("dodopayments", "api/payment.json")
    payment.update(payment_id=ident, created_at=f"{day}T05:30:31.152Z", metadata={})
    payment["customer"].update(email=email, customer_id=f"cus-{email}")
    return payment


def add_polar(api: ProviderApiServer, ident: str, email: str, day: str, refunded: bool) -> None:
    api.add("/v1/orders/", polar_order(ident, email, day, refunded))


def add_creem(api: ProviderApiServer, ident: str, email: str, day: str, refunded: bool) -> None:
    api.add("/v1/transactions/search", creem_transaction(ident, email, day, refunded))
    customer = fixture("creem", "api/customer.json")  # tests/fixtures/creem/api/customer.json
    customer.update(id=f"cust-{email}", email=email)
    api.put("/v1/customers", f"cust-{email}", customer)


def add_dodo(api: ProviderApiServer, ident: str, email: str, day: str, refunded: bool) -> None:
    api.add("/payments", dodo_payment(ident, email, day))
    if refunded:
        refund = fixture("dodopayments", "api/refund.json")  # tests/fixtures/dodopayments/api/refund.json
        refund.update(refund_id=f"ref-{ident}", payment_id=ident, created_at=f"{day}T23:00:00.000Z")
        api.add("/refunds", refund)


def polar_webhook(ident: str, email: str, day: str) -> Any:
    return {"type": "order.paid", "timestamp": f"{day}T09:15:42Z", "data": polar_order(ident, email, day)}


def creem_webhook(ident: str, email: str, day: str) -> Any:
    # tests/fixtures/creem/checkout_completed.json (SOURCES.md there), transaction and buyer edited
    body = fixture("creem", "checkout_completed.json")
    body["object"]["order"].update(transaction=ident, customer=f"cust-{email}")
    body["object"]["customer"].update(id=f"cust-{email}", email=email)
    body["object"]["metadata"] = {}
    return body


def dodo_webhook(ident: str, email: str, day: str) -> Any:
    # tests/fixtures/dodopayments/payment_succeeded.json (SOURCES.md there), payment and buyer edited
    body = fixture("dodopayments", "payment_succeeded.json")
    body["data"].update(payment_id=ident, metadata={})
    body["data"]["customer"].update(email=email, customer_id=f"cus-{email}")
    return body


CASES = {
    "polar": ("/v1", add_polar, polar_webhook, "polar:order:"),
    "creem": ("/v1", add_creem, creem_webhook, "creem:tran:"),
    "dodopayments": ("", add_dodo, dodo_webhook, "dodo:pay:"),
}


@pytest.mark.parametrize("provider", sorted(CASES))
def test_each_provider_backfills_what_webhooks_missed_once(
    tmp_path: Path, partnero: PartneroServer, provider: str
) -> None:
    suffix, add, webhook, prefix = CASES[provider]
    partnero.unknown_customer = "accept"
    with ProviderApiServer(provider) as api:
        settings = {
            "provider": provider,
            "secret": SECRET,
            "customer_key": ["known:customer_id", "known:email", "email"],
            "api_key": API_KEY,
            "api_base_url": api.url + suffix,
            "api_requests_per_second": 1000,
        }
        with LedgerBridge(f"sqlite:///{tmp_path}/b.db", partnero, {"e": settings}) as bridge:
            bridge.receive("e", webhook("p-delivered", "ann@example.com", "2026-03-01"))
            bridge.drain()
            add(api, "p-delivered", "ann@example.com", "2026-03-01", False)
            add(api, "p-missed", "ann@example.com", "2026-04-01", False)
            add(api, "p-refunded", "ben@example.com", "2026-04-02", True)
            endpoint = bridge.config.endpoints["e"]
            first = bridge.run(backfill.run(bridge.config, bridge.store, endpoint, SINCE, UNTIL))
            bridge.drain()
            assert first.stopped is None
            # Dodo lists the refund apart from its payment: that sale is queued, then cancelled unsent
            assert first.known == 1 and first.new[0] == f"{prefix}p-missed (sale)"
            assert f"{prefix}p-delivered (sale)" not in first.new
            assert {t.key: t.customer_key for t in partnero.live_transactions()} == {
                f"{prefix}p-delivered": "ann@example.com",
                f"{prefix}p-missed": "ann@example.com",
            }
            again = bridge.run(backfill.run(bridge.config, bridge.store, endpoint, SINCE, UNTIL))
            bridge.drain()
            assert again.new == [] and again.known == again.seen
            assert len(partnero.transactions) == 2
            # the provider's API was asked with its own auth and pages
            assert {r.status for r in api.requests} == {200}


def test_the_worker_reconciles_on_a_schedule_bounded_and_with_a_grace(
    tmp_path: Path, partnero: PartneroServer, lemon_api: ProviderApiServer
) -> None:
    from bridge.reconciler import Reconciler

    now = datetime(2026, 6, 10, 12, 0, tzinfo=UTC).timestamp()
    lemon_api.add("/v1/orders", ls_order("61", "g@example.com", "2026-06-09"))  # missed yesterday
    lemon_api.add("/v1/orders", ls_order("62", "h@example.com", "2026-06-01"))  # outside the 3d window
    young = ls_order("63", "i@example.com", "2026-06-10")
    young["attributes"]["created_at"] = "2026-06-10T11:30:00.000000Z"  # its webhook may still come
    lemon_api.add("/v1/orders", young)
    schedule = {"reconcile_every": "1h", "reconcile_window": "3d", "reconcile_grace": "1h", "reconcile_max_requests": 5}
    with ls_bridge(tmp_path, partnero, lemon_api, **schedule) as bridge:
        clock = [now]
        reconciler = Reconciler(bridge.config, bridge.store, lambda: clock[0])
        [first] = bridge.run(reconciler.run_due())
        assert first.new == ["lemonsqueezy:order:61 (sale)"] and first.seen == 1
        requests = len(lemon_api.requests)
        clock[0] += 1800
        assert bridge.run(reconciler.run_due()) == []  # not due yet: no API request
        assert len(lemon_api.requests) == requests
        clock[0] += 1800
        [second] = bridge.run(reconciler.run_due())
        assert (second.new, second.known) == (["lemonsqueezy:order:63 (sale)"], 1)
        assert second.api_requests <= 5

    # and inside the worker, beside delivery
    worker_schedule = {"reconcile_every": "1h", "reconcile_window": "400d", "reconcile_grace": "1s"}
    with ls_bridge(tmp_path / "w", partnero, lemon_api, **worker_schedule) as bridge:

        async def work() -> None:
            stopping = asyncio.Event()
            running = asyncio.create_task(bridge.worker.run(stopping))
            for _ in range(400):
                if len(partnero.live_transactions()) >= 3:
                    break
                await asyncio.sleep(0.05)
            stopping.set()
            bridge.worker.wake()
            await running

        partnero.reset()
        partnero.unknown_customer = "accept"
        bridge.run(work())
    assert sorted(t.key for t in partnero.live_transactions()) == [f"lemonsqueezy:order:{n}" for n in (61, 62, 63)]


def test_schedule_settings_are_durations(tmp_path: Path) -> None:
    from bridge.config import ConfigError, parse_config

    base = {"provider": "lemonsqueezy", "secret": "s" * 16}
    config = parse_config({"endpoints": {"e": {**base, "reconcile_every": "90m"}}})
    assert config.endpoints["e"].settings.reconcile_every == 5400.0
    with pytest.raises(ConfigError, match="reconcile_every: '1x' is not a duration"):
        parse_config({"endpoints": {"e": {**base, "reconcile_every": "1x"}}})


def test_the_docs_table_says_which_providers_have_backfill() -> None:
    import importlib.util
    import re

    from providers import registry

    text = (ROOT / "docs" / "backfill.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| ([^|]+?) \| (yes|not yet) \|", text, re.M)}
    with_api = {name for name in registry() if importlib.util.find_spec(f"providers._{name}_api") is not None}
    names = {"lemonsqueezy": "Lemon Squeezy", "dodopayments": "Dodo Payments"}
    documented = {name for name, has in rows.items() if has == "yes"}
    assert {names.get(name, name.capitalize()) for name in with_api} == documented


def test_mollie_backfill_reads_the_payment_list_page_by_page(
    tmp_path: Path, partnero: PartneroServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers import _mollie_api as mollie_api
    from tests.mollie_server import API_KEY as MOLLIE_KEY
    from tests.mollie_server import MollieServer
    from tests.mollie_server import fixture as mollie_fixture

    partnero.unknown_customer = "accept"
    with MollieServer() as mollie:
        # tests/fixtures/mollie/payment_paid.json (SOURCES.md there) as three payments of one day
        for n, ident in enumerate(("tr_Delivered1", "tr_Missed2", "tr_Refunded3")):
            payment = mollie_fixture("payment_paid.json")
            payment.update(id=ident, createdAt=f"2026-05-0{n + 1}T10:00:00+00:00", metadata={"user_id": f"u{n}"})
            if ident == "tr_Refunded3":
                payment["amountRefunded"] = dict(payment["amount"])
            mollie.set_payment(payment)
        settings = {
            "provider": "mollie",
            "secret": "url-token-0123456789",
            "api_key": MOLLIE_KEY,
            "api_base_url": mollie.url,
            "customer_key": ["metadata.user_id"],
        }
        with LedgerBridge(f"sqlite:///{tmp_path}/m.db", partnero, {"m": settings}) as bridge:
            bridge.receive("m", b"id=tr_Delivered1")  # the classic ping for the first payment
            bridge.drain()
            endpoint = bridge.config.endpoints["m"]
            monkeypatch.setattr(mollie_api, "PAGE_SIZE", 2)
            summary = bridge.run(backfill.run(bridge.config, bridge.store, endpoint, SINCE, UNTIL))
            bridge.drain()
            assert summary.stopped is None
            assert summary.new == ["mollie:payment:tr_Missed2 (sale)"]
            assert summary.known == 1
            assert {t.key: t.customer_key for t in partnero.live_transactions()} == {
                "mollie:payment:tr_Delivered1": "u0",
                "mollie:payment:tr_Missed2": "u1",
            }
            # newest first, two a page: the cursor of `_links.next`, then a 2018 payment ends the window
            pages = [r.query for r in mollie.requests if r.path == "/v2/payments"]
            assert pages == ["limit=2", "limit=2&from=tr_Delivered1"]
            second = bridge.run(backfill.run(bridge.config, bridge.store, endpoint, SINCE, UNTIL))
            assert second.new == [] and len(partnero.transactions) == 2


def test_mollie_cursor_pages() -> None:
    from providers._mollie_api import _params

    assert _params(1, None) == {"limit": 250}
    following = {"_links": {"next": {"href": "https://api.mollie.com/v2/payments?from=tr_Next&limit=250"}}}
    assert _params(2, following) == {"limit": 250, "from": "tr_Next"}
