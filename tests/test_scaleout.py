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


def _payments(count: int, seed: int) -> list[tuple[str, int, bytes]]:
    template = json.loads((FIXTURES / "dodopayments" / "payment_succeeded.json").read_text())
    rng = random.Random(seed)
    payments = []
    for n in range(count):
        body = json.loads(json.dumps(template))
        total = rng.randrange(100, 100_000)
        body["data"].update(payment_id=f"pay_scale{n}", total_amount=total, metadata={"user_id": f"u{n % 50}"})
        payments.append((f"msg_scale_{n}", total, json.dumps(body).encode()))
    return payments


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
    processes = []
    for index, command in enumerate(["serve", "serve", "worker"]):
        workdir = tmp_path / f"p{index}"
        workdir.mkdir()
        processes.append(BridgeProcess(workdir, json.loads(json.dumps(config)), command=command).start())
    servers = processes[:2]
    key = standard_webhook_key(DODO.secret)
    payments = _payments(payments_count, seed=payments_count)
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
        with httpx.Client() as client:
            for n in range(offset, len(payments), 4):
                msg_id, _, body = payments[n]
                # each delivery twice, to both serve processes, as a provider retry through a load balancer
                deliver(msg_id, body, servers[n % 2], client)
                deliver(msg_id, body, servers[(n + 1) % 2], client)

    threads = [threading.Thread(target=client_thread, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    while sent["ok"] < kill_at * 2 * len(payments):
        time.sleep(0.01)
    servers[0].kill()
    time.sleep(0.5)
    servers[0].start()
    for thread in threads:
        thread.join(timeout=600)
    assert sent["ok"] == 2 * len(payments)

    expected = {f"dodo:pay:pay_scale{n}": Decimal(total) / 100 for n, (_, total, _) in enumerate(payments)}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(partnero.live_transactions()) < len(expected):
        time.sleep(0.2)
    time.sleep(1.0)
    posted = Counter(t.key for t in partnero.transactions)
    assert [k for k, n in posted.items() if n > 1] == [], "a payment was posted twice"
    assert {t.key: t.amount for t in partnero.live_transactions()} == expected
    for process in processes:
        process.kill()


def test_two_servers_and_a_worker_share_one_postgres(
    tmp_path: Path, partnero: PartneroServer, postgres_url: str
) -> None:
    run_scaleout(tmp_path, partnero, postgres_url, payments_count=300, kill_at=0.4)


@pytest.mark.slow
def test_ten_thousand_deliveries_across_processes_with_a_kill(
    tmp_path: Path, partnero: PartneroServer, postgres_url: str
) -> None:
    # 10,000 signed deliveries, each sent twice (to both serve processes)
    run_scaleout(tmp_path, partnero, postgres_url, payments_count=10_000, kill_at=0.5)
