"""Recovery from Partnero's failures with the default delivery settings: the four timing targets.

    .venv/bin/python bench/recovery.py [--outage-seconds 600] [--backlog 1000]

Each scenario starts the real bridge (`serve`, SQLite, no `delivery:` settings: the shipped defaults)
and the Partnero test server on loopback, sends signed Dodo Payments webhooks, makes Partnero fail, and
measures from the outside what the merchant would see:

1. outage: Partnero answers 503 to everything for `--outage-seconds` with `--backlog` sales pending,
   then heals. Target: the first delivery within 30 s of healing, every sale exactly once.
2. five payments whose first three answers are each a 500. Target: each delivered within 60 s of its
   first attempt.
3. 100 sales and 20 refunds while 30 % of Partnero's answers are a random 5xx. Target: Partnero's ledger
   exact within 120 s of the first webhook.
4. a sale Partnero records but never answers. Target: looked up (and not posted again) within the
   client timeout (15 s) plus 30 s.

Prints one line per scenario with the measured numbers and PASS/FAIL; docs/delivery.md quotes them.
Every process it starts is killed at the end, on failure too.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers.signatures import standard_webhook_headers, standard_webhook_key  # noqa: E402
from tests.bridge_process import BridgeProcess  # noqa: E402
from tests.e2e_kit import FIXTURES, provider_cases  # noqa: E402
from tests.partnero_server import PartneroServer  # noqa: E402

DODO = next(c for c in provider_cases() if c.provider == "dodopayments")
CUSTOMER = "bench-user"


def sale(n: int, cents: int) -> tuple[str, bytes]:
    body = json.loads((FIXTURES / "dodopayments" / "payment_succeeded.json").read_text())
    body["data"].update(payment_id=f"pay_rec{n}", total_amount=cents, metadata={"user_id": CUSTOMER})
    if "tax" in body["data"]:
        body["data"]["tax"] = 0
    return f"msg_sale_{n}", json.dumps(body).encode()


def refund(n: int, cents: int) -> tuple[str, bytes]:
    body = json.loads((FIXTURES / "dodopayments" / "refund_succeeded.json").read_text())
    body["data"].update(payment_id=f"pay_rec{n}", refund_id=f"ref_rec{n}", amount=cents, is_partial=False)
    return f"msg_refund_{n}", json.dumps(body).encode()


def post(bridge: BridgeProcess, delivery: tuple[str, bytes], client: httpx.Client) -> None:
    msg_id, body = delivery
    headers = {
        "content-type": "application/json",
        **standard_webhook_headers(standard_webhook_key(DODO.secret), msg_id, int(time.time()), body),
    }
    response = client.post(f"{bridge.url}/webhooks/dodo", content=body, headers=headers, timeout=10)
    response.raise_for_status()


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[PartneroServer, BridgeProcess]]:
    with PartneroServer() as partnero:
        partnero.add_customer(CUSTOMER)
        config: dict[str, Any] = {
            "partnero": {"api_key": partnero.api_key, "base_url": partnero.url},
            "endpoints": {"dodo": DODO.endpoint_settings},
        }
        bridge = BridgeProcess(workdir, config)
        try:
            yield partnero, bridge.start()
        finally:
            bridge.kill()


def wait(condition: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until `condition` held, or None at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def twice_posted(partnero: PartneroServer) -> int:
    return sum(1 for n in Counter(t.key for t in partnero.transactions).values() if n > 1)


def outage(workdir: Path, seconds: float, backlog: int) -> tuple[bool, str]:
    with setup(workdir) as (partnero, bridge), httpx.Client() as client:
        partnero.fail_next(10**9, status=503)
        for n in range(backlog):
            post(bridge, sale(n, 1000 + n), client)
        time.sleep(seconds)  # the outage itself: this is the scenario, not a wait for a result
        requests_during = len(partnero.requests)
        partnero.clear_faults()
        healed = time.monotonic()
        first = wait(lambda: len(partnero.live_transactions()) >= 1, 120)
        every = wait(lambda: len(partnero.live_transactions()) >= backlog, 600)
        every = None if every is None else time.monotonic() - healed
        bridge.wait_settled(60)
        exact = len(partnero.live_transactions()) == backlog and twice_posted(partnero) == 0
        ok = first is not None and first <= 30 and every is not None and exact
        return ok, (
            f"{backlog} pending through a {seconds:.0f} s outage ({requests_during} requests during it): first "
            f"delivery {_s(first)} after healing, all {_s(every)} after, exactly once: {exact}"
        )


def five_failing(workdir: Path) -> tuple[bool, str]:
    with setup(workdir) as (partnero, bridge), httpx.Client() as client:
        keys = [f"dodo:pay:pay_rec{n}" for n in range(5)]
        for key in keys:
            partnero.fail_next(3, status=500, method="POST", path="/v1/transactions", key=key)
        for n in range(5):
            post(bridge, sale(n, 2000 + n), client)
        wait(lambda: len(partnero.live_transactions()) == 5, 120)
        bridge.wait_settled(60)
        spans = []
        for key in keys:
            times = [r.time for r in partnero.requests if r.transaction_key == key]
            created = [
                r.time for r in partnero.requests if r.transaction_key == key and r.method == "POST" and r.status == 200
            ]
            spans.append(created[0] - times[0] if created else None)
        ok = all(s is not None and s <= 60 for s in spans) and twice_posted(partnero) == 0
        return ok, f"5 payments failing 3 times each: delivered {', '.join(_s(s) for s in spans)} after first try"


def random_failures(workdir: Path) -> tuple[bool, str]:
    with setup(workdir) as (partnero, bridge), httpx.Client() as client:
        partnero.fail_ratio(0.3, seed=9)
        started = time.monotonic()
        for n in range(100):
            post(bridge, sale(n, 3000 + n), client)
        for n in range(0, 100, 5):
            post(bridge, refund(n, 3000 + n), client)
        expected = {f"dodo:pay:pay_rec{n}": Decimal(3000 + n) / 100 for n in range(100) if n % 5}

        def exact() -> bool:
            return {t.key: t.amount for t in partnero.live_transactions()} == expected

        took = wait(exact, 120 - (time.monotonic() - started))
        total = None if took is None else time.monotonic() - started
        ok = total is not None and total <= 120 and twice_posted(partnero) == 0
        return ok, f"100 sales + 20 refunds under 30 % random 5xx: ledger exact after {_s(total)}"


def unanswered(workdir: Path) -> tuple[bool, str]:
    with setup(workdir) as (partnero, bridge), httpx.Client() as client:
        partnero.hang_next(1, seconds=60, commit=True, method="POST", path="/v1/transactions")
        post(bridge, sale(0, 4000), client)
        assert wait(lambda: len(partnero.requests) >= 1, 30) is not None
        sent = partnero.requests[0].time
        looked = wait(lambda: any(r.method == "GET" and r.path == "/v1/transactions" for r in partnero.requests), 90)
        bridge.wait_settled(60)
        lookup = next(r.time for r in partnero.requests if r.method == "GET" and r.path == "/v1/transactions")
        posts = [r for r in partnero.requests if r.method == "POST"]
        ok = looked is not None and lookup - sent <= 45 and len(posts) == 1 and len(partnero.transactions) == 1
        return ok, f"a sale recorded but never answered: looked up {lookup - sent:.1f} s after it was sent, posted once"


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage-seconds", type=float, default=600)
    parser.add_argument("--backlog", type=int, default=1000)
    args = parser.parse_args()
    scenarios: list[tuple[str, Callable[[Path], tuple[bool, str]]]] = [
        ("five failing", five_failing),
        ("unanswered", unanswered),
        ("random 5xx", random_failures),
        ("outage", lambda d: outage(d, args.outage_seconds, args.backlog)),
    ]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, scenario in scenarios:
            workdir = Path(tmp) / name.replace(" ", "-")
            workdir.mkdir()
            ok, line = scenario(workdir)
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'}  {name:13} {line}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
