"""Fault injection: the final Partnero state must equal the expected ledger exactly.

Partnero (the loopback test server) answers 30 % of calls with 5xx, bursts 429 with Retry-After,
commits requests and then hangs past the client timeout or breaks the connection. The provider side
sends every event three times in random order — refunds before sales, partial refunds, disputes — and
the bridge process is SIGKILLed and restarted during the run. At the end Partnero must hold exactly one
live transaction per paid payment with the right net amount and currency, nothing else, and no key may
ever have been posted twice.
"""

from __future__ import annotations

import copy
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.bridge_process import BridgeProcess
from tests.e2e_kit import FIXTURES, ProviderCase, provider_cases
from tests.partnero_server import PartneroServer, RecordedRequest

CASES = {c.provider: c for c in provider_cases()}
SOAK_DELIVERY = {
    "max_attempts": 60,
    "initial_backoff_seconds": 0.05,
    "max_backoff_seconds": 1.0,
    "timeout_seconds": 1.0,
    "poll_interval_seconds": 0.05,
}


@dataclass
class Delivery:
    provider: str
    body: bytes
    msg_id: str  # what a provider keeps across its own retries


@dataclass
class Payment:
    key: str
    customer: str
    currency: str
    expected: Decimal  # the net amount that must be live in Partnero; 0 = nothing
    deliveries: list[Delivery] = field(default_factory=list)


def _cents(value: Decimal) -> int:
    return int(value * 100)


def lemonsqueezy_payment(rng: random.Random, n: int) -> Payment:
    """An order, then maybe cumulative partial refunds and maybe a full refund (`order_refunded`)."""
    sale = json.loads((FIXTURES / "lemonsqueezy" / "order_created.json").read_text())
    refund_template = json.loads((FIXTURES / "lemonsqueezy" / "order_refunded.json").read_text())
    order_id = str(50_000 + n)
    total = rng.randrange(500, 50_000)
    customer = f"ls-user-{n}"
    for body in (sale,):
        body["data"]["id"] = order_id
        body["data"]["attributes"].update(total=total, subtotal=total, user_email=f"buyer{n}@example.com")
        body["meta"]["custom_data"] = {"user_id": customer}
    payment = Payment(f"lemonsqueezy:order:{order_id}", customer, "USD", Decimal(total) / 100)
    payment.deliveries.append(Delivery("lemonsqueezy", json.dumps(sale).encode(), f"ls-{n}-sale"))
    scenario = rng.choice(["plain", "plain", "partial", "partial2", "full", "partial_full"])
    refunded = 0
    steps: list[tuple[int, bool]] = []
    if scenario in ("partial", "partial2", "partial_full"):
        refunded = rng.randrange(1, total // 2)
        steps.append((refunded, False))
    if scenario == "partial2":
        refunded = rng.randrange(refunded + 1, total)
        steps.append((refunded, False))
    if scenario in ("full", "partial_full"):
        refunded = total
        steps.append((total, True))
    for index, (cumulative, full) in enumerate(steps):
        body = copy.deepcopy(refund_template)
        body["data"]["id"] = order_id
        body["meta"]["custom_data"] = {"user_id": customer}
        attributes = body["data"]["attributes"]
        attributes.update(total=total, subtotal=total, refunded_amount=cumulative, refunded=full)
        attributes["status"] = "refunded" if full else "paid"
        payment.deliveries.append(Delivery("lemonsqueezy", json.dumps(body).encode(), f"ls-{n}-r{index}"))
    payment.expected = Decimal(total - refunded) / 100
    return payment


def dodo_payment(rng: random.Random, n: int) -> Payment:
    """A payment, then maybe per-refund partial refunds, a full refund, or a dispute that is lost or won."""
    sale = json.loads((FIXTURES / "dodopayments" / "payment_succeeded.json").read_text())
    payment_id = f"pay_soak{n}"
    total = rng.randrange(500, 50_000)
    customer = f"dodo-user-{n}"
    sale["data"].update(payment_id=payment_id, total_amount=total, metadata={"user_id": customer})
    sale["data"]["customer"]["email"] = f"dodo{n}@example.com"
    payment = Payment(f"dodo:pay:{payment_id}", customer, "USD", Decimal(total) / 100)
    payment.deliveries.append(Delivery("dodopayments", json.dumps(sale).encode(), f"msg_{n}_sale"))

    def event(name: str, data: dict[str, Any], tag: str) -> None:
        body = json.loads((FIXTURES / "dodopayments" / name).read_text())
        body["data"].update(payment_id=payment_id, **data)
        payment.deliveries.append(Delivery("dodopayments", json.dumps(body).encode(), f"msg_{n}_{tag}"))

    scenario = rng.choice(["plain", "partial", "partials", "full", "lost", "won"])
    refunded = 0
    if scenario in ("partial", "partials"):
        for index in range(1 if scenario == "partial" else 2):
            amount = rng.randrange(1, total // 3)
            refunded += amount
            event(
                "refund_succeeded.json",
                {"amount": amount, "is_partial": True, "refund_id": f"ref_{n}_{index}"},
                f"r{index}",
            )
    elif scenario == "full":
        event("refund_succeeded.json", {"amount": total, "is_partial": False, "refund_id": f"ref_{n}"}, "r")
        refunded = total
    elif scenario == "lost":
        event("dispute_opened.json", {"dispute_id": f"dp_{n}"}, "dopen")
        event("dispute_lost.json", {"dispute_id": f"dp_{n}"}, "dlost")
        refunded = total
    elif scenario == "won":
        event("dispute_opened.json", {"dispute_id": f"dp_{n}"}, "dopen")
        event("dispute_won.json", {"dispute_id": f"dp_{n}"}, "dwon")
    payment.expected = Decimal(total - refunded) / 100
    return payment


GENERATORS: list[Callable[[random.Random, int], Payment]] = [lemonsqueezy_payment, dodo_payment]


class Provider:
    """Sends deliveries like a provider: signs at send time, retries anything but 2xx/401, a few threads."""

    def __init__(self, bridge: BridgeProcess, cases: dict[str, ProviderCase]) -> None:
        self.bridge = bridge
        self.adapters = {name: case.endpoint().adapter for name, case in cases.items()}
        self.secrets = {name: case.secret for name, case in cases.items()}
        self.refused: list[tuple[str, int]] = []

    def send(self, delivery: Delivery) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            signed = self.adapters[delivery.provider].sign(delivery.body, self.secrets[delivery.provider], time.time())
            headers = {"content-type": "application/json", **signed.headers}
            if "webhook-id" in headers:
                # Standard Webhooks senders keep the message id across their retries
                headers["webhook-id"] = delivery.msg_id
                headers.update(_resign(self.adapters[delivery.provider], delivery, self.secrets[delivery.provider]))
            try:
                response = httpx.post(
                    f"{self.bridge.url}/webhooks/{delivery.provider}", content=delivery.body, headers=headers, timeout=5
                )
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if response.status_code == 200:
                return
            if response.status_code in (401, 404, 413):
                self.refused.append((delivery.msg_id, response.status_code))
                return
            time.sleep(0.05)
        raise TimeoutError(f"delivery {delivery.msg_id} never accepted")


def _resign(adapter: Any, delivery: Delivery, secret: str) -> dict[str, str]:
    from providers.signatures import standard_webhook_headers, standard_webhook_key

    return standard_webhook_headers(standard_webhook_key(secret), delivery.msg_id, int(time.time()), delivery.body)


def run_soak(
    partnero: PartneroServer,
    bridge_factory: Callable[..., BridgeProcess],
    payments_count: int,
    kills: int,
    seed: int,
) -> None:
    rng = random.Random(seed)
    payments = [GENERATORS[n % len(GENERATORS)](rng, n) for n in range(payments_count)]
    for payment in payments:
        partnero.add_customer(payment.customer)
    deliveries = [d for p in payments for d in p.deliveries for _ in range(3)]
    rng.shuffle(deliveries)
    events = sum(len(p.deliveries) for p in payments)

    bridge = bridge_factory(
        {name: CASES[name].endpoint_settings for name in ("lemonsqueezy", "dodopayments")},
        delivery=SOAK_DELIVERY,
        partnero={"max_requests_per_second": 1000, "max_concurrency": 8},
    )
    partnero.fail_ratio(0.3, seed=seed)
    # every request stays in flight a moment, so two requests for one key would overlap and be seen
    partnero.latency = 0.02
    provider = Provider(bridge, CASES)

    sent = 0
    lock = threading.Lock()

    def worker(chunk: list[Delivery]) -> None:
        nonlocal sent
        for delivery in chunk:
            provider.send(delivery)
            with lock:
                sent += 1

    threads = [threading.Thread(target=worker, args=(deliveries[i::4],), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    # faults that need Partnero to have committed first, and the kills, spread over the run
    for k in range(kills):
        target = len(deliveries) * (k + 1) // (kills + 1)
        while sent < target and any(t.is_alive() for t in threads):
            time.sleep(0.02)
        partnero.hang_next(2, seconds=1.5, commit=True, method="POST")
        partnero.break_next(2, commit=True)
        partnero.rate_limit_next(3, retry_after=1)
        time.sleep(rng.uniform(0.05, 0.4))
        bridge.kill()
        bridge.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sent == len(deliveries)
    assert provider.refused == []

    expected = {p.key: p.expected for p in payments if p.expected > 0}
    deadline = time.monotonic() + 120

    def live_by_payment() -> dict[str, list[Decimal | None]]:
        live: dict[str, list[Decimal | None]] = {}
        for transaction in partnero.live_transactions():
            live.setdefault(transaction.key.split("~adj")[0], []).append(transaction.amount)
        return live

    while time.monotonic() < deadline:
        if {k: v for k, v in live_by_payment().items()} == {k: [v] for k, v in expected.items()}:
            break
        time.sleep(0.25)
    partnero.fail_ratio(0)
    bridge.wait_settled(timeout=60)  # then nothing more can be (wrongly) sent

    live = live_by_payment()
    if live != {k: [v] for k, v in expected.items()}:
        bad = [k for k in set(live) | set(expected) if live.get(k) != ([expected[k]] if k in expected else [])]
        for key in bad[:3]:
            print("\n==", key)
            for r in partnero.requests:
                if r.transaction_key and r.transaction_key.startswith(key):
                    print(f"  {r.time:.3f} {r.method} {r.transaction_key} -> {r.status} fault={r.fault}")
            for line in bridge.logs().splitlines():
                if key in line:
                    print("  LOG", line[:300])
    assert live == {k: [v] for k, v in expected.items()}, _diff(live, expected)
    assert all(t.amount_units == "USD" for t in partnero.live_transactions())
    assert {t.customer_key for t in partnero.live_transactions()} <= {p.customer for p in payments}
    posted = Counter(t.key for t in partnero.transactions)
    assert [k for k, n in posted.items() if n > 1] == [], "a transaction key was posted twice"
    assert in_flight_overlaps(partnero) == [], "two requests for one key were in flight at once"
    print(
        f"soak: {payments_count} payments, {events} events, {len(deliveries)} deliveries, {kills} kills, "
        f"{len(partnero.requests)} Partnero requests, {len(expected)} live transactions"
    )


def in_flight_overlaps(partnero: PartneroServer) -> list[RecordedRequest]:
    """Requests that arrived while another request for the same transaction key was being processed."""
    return [r for r in partnero.requests if r.in_flight > 1]


def _diff(live: dict[str, list[Decimal | None]], expected: dict[str, Decimal]) -> str:
    lines = []
    for key in sorted(set(live) | set(expected)):
        want = [expected[key]] if key in expected else []
        if live.get(key, []) != want:
            lines.append(f"{key}: live {live.get(key)} expected {want}")
    return "\n".join(lines[:20])


def test_fault_injection_run_ends_with_the_exact_ledger(
    partnero: PartneroServer, bridge_factory: Callable[..., BridgeProcess]
) -> None:
    run_soak(partnero, bridge_factory, payments_count=80, kills=2, seed=int(os.environ.get("SOAK_SEED", "7")))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_fault_injection_soak_1000_events_5_kills(
    partnero: PartneroServer, bridge_factory: Callable[..., BridgeProcess]
) -> None:
    run_soak(partnero, bridge_factory, payments_count=460, kills=5, seed=20261125)
