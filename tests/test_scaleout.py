"""Several bridge processes on one PostgreSQL store share one truth.

Two `serve` processes and one `worker` share a throwaway PostgreSQL schema. A provider-shaped client
sends every delivery twice, to different processes, while one `serve` process is SIGKILLed and
restarted. The Partnero test server must end with exactly one transaction per payment.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.signatures import standard_webhook_headers, standard_webhook_key
from tests.bridge_process import BridgeProcess
from tests.conftest import FAST_DELIVERY
from tests.e2e_kit import FIXTURES, provider_cases
from tests.partnero_server import PartneroServer
from tests.postgres_kit import throwaway_schema

DODO = next(c for c in provider_cases() if c.provider == "dodopayments")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with throwaway_schema() as url:
        yield url


@dataclass
class ScalePayment:
    key: str
    expected: Decimal  # net amount live at Partnero at the end; 0: nothing
    deliveries: list[tuple[str, bytes]]  # (webhook-id, body)


def _payments(count: int, seed: int) -> list[ScalePayment]:
    """Sales; a quarter fully refunded, a quarter partially (Dodo sends the amount of each refund)."""
    sale = json.loads((FIXTURES / "dodopayments" / "payment_succeeded.json").read_text())
    refund = json.loads((FIXTURES / "dodopayments" / "refund_succeeded.json").read_text())
    rng = random.Random(seed)
    payments = []
    for n in range(count):
        body = json.loads(json.dumps(sale))
        total = rng.randrange(100, 100_000)
        body["data"].update(payment_id=f"pay_scale{n}", total_amount=total, metadata={"user_id": f"u{n % 50}"})
        if "tax" in body["data"]:
            body["data"]["tax"] = 0
        payment = ScalePayment(f"dodo:pay:pay_scale{n}", Decimal(total) / 100, [(f"msg_sale_{n}", _dump(body))])
        scenario = n % 4
        if scenario in (1, 2):
            back = total if scenario == 1 else rng.randrange(1, total)
            body = json.loads(json.dumps(refund))
            body["data"].update(
                payment_id=f"pay_scale{n}", refund_id=f"ref_scale{n}", amount=back, is_partial=back < total
            )
            payment.deliveries.append((f"msg_refund_{n}", _dump(body)))
            payment.expected = Decimal(total - back) / 100
        payments.append(payment)
    return payments


def _dump(body: Any) -> bytes:
    return json.dumps(body).encode()


def _settled(postgres_url: str) -> bool:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        received = conn.execute("SELECT COUNT(*) FROM calls WHERE status = 'received'").fetchone()
        pending = conn.execute("SELECT COUNT(*) FROM operations WHERE status = 'pending'").fetchone()
    return received == (0,) and pending == (0,)


def _print_ledger(postgres_url: str, key: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        for row in conn.execute(
            "SELECT id, kind, event_type, status, reason, created_at FROM events WHERE transaction_key = %s", (key,)
        ):
            print("  EVENT", row)
        for row in conn.execute(
            "SELECT id, op_key, status, reason, request FROM operations WHERE transaction_key = %s", (key,)
        ):
            print("  OP", row)
        for row in conn.execute("SELECT * FROM payments WHERE transaction_key = %s", (key,)):
            print("  PAYMENT", row)


def run_scaleout(
    tmp_path: Path, partnero: PartneroServer, postgres_url: str, payments_count: int, kill_at: float
) -> None:
    for n in range(50):
        partnero.add_customer(f"u{n}")
    config: dict[str, Any] = {
        "partnero": {"api_key": partnero.api_key, "base_url": partnero.url, "max_requests_per_second": 2000},
        "delivery": {**FAST_DELIVERY, "max_attempts": 30, "lease_seconds": 3},
        "store": postgres_url,
        "endpoints": {"dodo": DODO.endpoint_settings},
    }
    processes: list[BridgeProcess] = []
    try:
        for index, command in enumerate(["serve", "serve", "worker"]):
            workdir = tmp_path / f"p{index}"
            workdir.mkdir()
            processes.append(BridgeProcess(workdir, json.loads(json.dumps(config)), command=command).start())
        _drive(processes, partnero, postgres_url, _payments(payments_count, seed=payments_count), kill_at)
    finally:
        for process in processes:
            process.kill()


def _drive(
    processes: list[BridgeProcess],
    partnero: PartneroServer,
    postgres_url: str,
    payments: list[ScalePayment],
    kill_at: float,
) -> None:
    servers = processes[:2]
    key = standard_webhook_key(DODO.secret)
    deliveries = [d for p in payments for d in p.deliveries]
    random.Random(len(deliveries)).shuffle(deliveries)
    sent = Counter[str]()
    lock = threading.Lock()

    def deliver(msg_id: str, body: bytes, target: BridgeProcess, client: httpx.Client) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            headers = {
                "content-type": "application/json",
                **standard_webhook_headers(key, msg_id, int(time.time()), body),
            }
            try:
                response = client.post(f"{target.url}/webhooks/dodo", content=body, headers=headers, timeout=5)
                if response.status_code == 200:
                    with lock:
                        sent["ok"] += 1
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise TimeoutError(msg_id)

    def client_thread(offset: int) -> None:
        # one delivery to both serve processes at the same moment, as two retries racing through a
        # load balancer: the two ingests must meet in the store and become one call
        with httpx.Client() as first, httpx.Client() as second, ThreadPoolExecutor(max_workers=2) as pair:
            for n in range(offset, len(deliveries), 4):
                msg_id, body = deliveries[n]
                both = [
                    pair.submit(deliver, msg_id, body, servers[0], first),
                    pair.submit(deliver, msg_id, body, servers[1], second),
                ]
                for future in both:
                    future.result()

    threads = [threading.Thread(target=client_thread, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 300
    while sent["ok"] < kill_at * 2 * len(deliveries) and time.monotonic() < deadline:
        time.sleep(0.01)
    servers[0].kill()
    servers[0].start()
    for thread in threads:
        thread.join(timeout=600)
    assert sent["ok"] == 2 * len(deliveries)

    expected = {p.key: p.expected for p in payments if p.expected > 0}
    deadline = time.monotonic() + 300
    while not _settled(postgres_url):
        assert time.monotonic() < deadline, "the processes still had work after 300 s"
        time.sleep(0.2)
    posted = Counter(t.key for t in partnero.transactions)
    assert [k for k, n in posted.items() if n > 1] == [], "a payment was posted twice"
    live = {t.key.split("~adj")[0]: t.amount for t in partnero.live_transactions()}
    for key in [k for k in set(live) | set(expected) if live.get(k) != expected.get(k)][:3]:
        print("==", key, "live", live.get(key), "expected", expected.get(key))
        for r in partnero.requests:
            if r.transaction_key and r.transaction_key.startswith(key):
                print(f"  {r.time:.3f} {r.method} {r.transaction_key} -> {r.status} fault={r.fault}")
        _print_ledger(postgres_url, key)
    assert live == expected
    assert len(partnero.live_transactions()) == len(expected)


def test_two_servers_and_a_worker_share_one_postgres(
    tmp_path: Path, partnero: PartneroServer, postgres_url: str
) -> None:
    run_scaleout(tmp_path, partnero, postgres_url, payments_count=300, kill_at=0.4)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ten_thousand_deliveries_across_processes_with_a_kill(
    tmp_path: Path, partnero: PartneroServer, postgres_url: str
) -> None:
    # 10,000 signed deliveries, each sent twice (to both serve processes)
    run_scaleout(tmp_path, partnero, postgres_url, payments_count=10_000, kill_at=0.5)
